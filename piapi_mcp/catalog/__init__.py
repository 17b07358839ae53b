"""The catalog: every PiAPI (model, task_type) pair piapi-mcp knows, one spec each, in its family's module.

Adding a model or task type is one :class:`TaskSpec` in its family's module; a new family is one
new module with a ``SPECS`` tuple, found here by itself. Everything else (tool schema, media
resolution, duplicate guard, ledger, waiting, saving, the sandbox, ``piapi://models``) reads the spec.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from piapi_mcp.catalog._spec import (
    AudioInput,
    DurationDriver,
    ImageInput,
    MediaField,
    OutputKind,
    SizeFromImage,
    Status,
    TaskSpec,
    ToolInfo,
    VideoInput,
)


class Catalog:
    """Specs by ``(model, task_type)``, in declaration order."""

    def __init__(self, specs: Iterable[TaskSpec]) -> None:
        self._specs: dict[tuple[str, str], TaskSpec] = {}
        for spec in specs:
            if spec.key in self._specs:
                raise ValueError(f"two specs for {spec.key}")
            self._specs[spec.key] = spec

    def find(self, model: str, task_type: str) -> TaskSpec | None:
        """The spec of ``(model, task_type)``, or ``None`` when the catalog does not know the pair."""
        return self._specs.get((model, task_type))

    def all(self) -> tuple[TaskSpec, ...]:
        """Every spec."""
        return tuple(self._specs.values())

    def tools(self) -> tuple[TaskSpec, ...]:
        """The specs that have a curated tool."""
        return tuple(spec for spec in self._specs.values() if spec.tool is not None)

    def tool(self, name: str) -> TaskSpec | None:
        """The spec behind the curated tool called ``name``."""
        return next((spec for spec in self.tools() if spec.tool and spec.tool.name == name), None)


def _family_specs() -> list[TaskSpec]:
    """Every family module's ``SPECS``, modules in name order (``_``-prefixed ones are not families)."""
    specs: list[TaskSpec] = []
    for found in sorted(pkgutil.iter_modules(__path__), key=lambda module: module.name):
        if not found.name.startswith("_"):
            specs.extend(importlib.import_module(f"{__name__}.{found.name}").SPECS)
    return specs


CATALOG = Catalog(_family_specs())

__all__ = [
    "CATALOG",
    "AudioInput",
    "Catalog",
    "DurationDriver",
    "ImageInput",
    "MediaField",
    "OutputKind",
    "SizeFromImage",
    "Status",
    "TaskSpec",
    "ToolInfo",
    "VideoInput",
]
