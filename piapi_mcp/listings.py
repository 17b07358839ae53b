"""The lists a host asks for as it starts a server, remembered across restarts.

A host asks for ``tools/list`` (and most for resources, templates and prompts) right after starting
the server, and waits for the answer before the session is usable. Building those lists means
importing the catalog and deriving a dozen JSON schemas: most of what piapi-mcp adds to the SDK's
own start. They change only with the installed code and a few settings, so the server keeps the last
ones it published in the state folder, under a key made of both, and the next start answers from
there; the tools themselves are built on the first request that needs them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Final, NamedTuple

from piapi_mcp._version import package_version

logger = logging.getLogger("piapi_mcp")

#: The file in the state folder.
FILE_NAME: Final = "listings.json"
#: Bumped when the file's layout changes: an older file then has another key, and is ignored.
LAYOUT: Final = 1
#: A file larger than this is not ours (the lists are about 30 KB): it is ignored, not read.
MAX_FILE_BYTES: Final = 1_000_000


class Listings(NamedTuple):
    """What ``tools/list``, ``resources/list``, ``resources/templates/list`` and ``prompts/list`` answer,
    as the JSON of the SDK's objects (``mcp.types.Tool`` and the others, dumped by alias)."""

    tools: list[dict[str, Any]]
    resources: list[dict[str, Any]]
    resource_templates: list[dict[str, Any]]
    prompts: list[dict[str, Any]]


class ListingSettings(NamedTuple):
    """The settings the lists depend on: the default wait and the duplicate window are in tool
    schemas, the task card adds links and a resource, whose CSP lists the origins media come from
    (PiAPI's, and the base URL's: its origin only, so that no credential in it is ever written)."""

    media_origins: tuple[str, ...]
    wait_seconds: float
    dedup_seconds: float
    task_card: bool

    @classmethod
    def of(
        cls, base_url: str, *, wait_seconds: float, dedup_seconds: float, task_card: bool
    ) -> ListingSettings:
        """The settings of a server over PiAPI at ``base_url`` (only its media origin is kept)."""
        from piapi_mcp.card import media_origins

        return cls(tuple(media_origins(base_url)), wait_seconds, dedup_seconds, task_card)


class ListingCache:
    """The lists last published for one key, in ``folder``/``listings.json``.

    The key is the installed code (this package's files, the SDK's, pydantic's and Python's versions)
    plus :class:`ListingSettings`: any change there misses, and the lists are built anew. A file that
    cannot be read, is not ours, or has another key is ignored; one that cannot be written is logged
    at DEBUG and the server goes on (it only starts slower next time).
    """

    def __init__(self, folder: Path, settings: ListingSettings) -> None:
        self.path = folder / FILE_NAME
        self.key = listing_key(settings)

    def load(self) -> Listings | None:
        """The lists stored under this cache's key, or ``None``."""
        try:
            with self.path.open("rb") as file:
                raw = file.read(MAX_FILE_BYTES + 1)
            if len(raw) > MAX_FILE_BYTES:
                return None
            stored = json.loads(raw)
            if not isinstance(stored, dict) or stored.get("key") != self.key:
                return None
            lists = {name: stored[name] for name in ("tools", "resources", "resource_templates", "prompts")}
        except (OSError, ValueError, KeyError) as err:
            if not isinstance(err, FileNotFoundError):
                logger.debug("listing cache %s not read: %s", self.path, type(err).__name__)
            return None
        for items in lists.values():
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                return None
        return Listings(**lists)

    def save(self, listings: Listings) -> None:
        """Store ``listings`` under this cache's key (written aside, then renamed over the old file)."""
        stored = {"key": self.key, **listings._asdict()}
        temporary = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(stored, separators=(",", ":")), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as err:
            logger.debug("listing cache %s not written: %s", self.path, err)
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


def listing_key(settings: ListingSettings) -> Any:
    """The installed code and ``settings``, as JSON (compared whole: a few KB, and no digest to import)."""
    key = {"layout": LAYOUT, "code": code_fingerprint(), "settings": settings._asdict()}
    return json.loads(json.dumps(key))


def code_fingerprint() -> list[Any]:
    """What identifies the code that builds the lists: versions, and the size and modification time of
    every source file of this package and of the SDK's and pydantic's entry files (a reinstall or an
    edit of any of them changes it). A few hundred ``stat`` calls: well under a millisecond."""
    import mcp
    import mcp_types
    import pydantic

    package = Path(__file__).parent
    files: list[tuple[str, int, int]] = []
    for folder, subfolders, names in os.walk(package):
        subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
        for name in sorted(names):
            if name.endswith((".py", ".html")):
                path = os.path.join(folder, name)
                info = os.stat(path)
                files.append((os.path.relpath(path, package), info.st_size, info.st_mtime_ns))
    others = []
    for module in (mcp, mcp_types, pydantic):
        entry = os.stat(module.__file__) if module.__file__ else None
        size, mtime = (entry.st_size, entry.st_mtime_ns) if entry else (0, 0)
        others.append((module.__name__, module.__file__, size, mtime))
    return [package_version(), sys.version, pydantic.VERSION, others, files]
