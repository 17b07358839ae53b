"""The package's version: one literal here, read by the build (pyproject) and by the running code."""

from __future__ import annotations

__version__ = "0.1.0"


def package_version() -> str:
    """This package's version (the build takes the installed distribution's from the same literal).

    Not read through ``importlib.metadata``: importing it and scanning the installed distributions
    costs tens of milliseconds at every start, for the same answer.
    """
    return __version__
