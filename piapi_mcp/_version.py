"""The package's version: one literal here, read by the build (pyproject) and by the running code."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__version__ = "0.1.0"


def package_version() -> str:
    """The installed distribution's version, or this source tree's when it runs uninstalled."""
    try:
        return version("piapi-mcp")
    except PackageNotFoundError:
        return __version__
