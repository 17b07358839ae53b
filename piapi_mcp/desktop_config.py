"""``piapi-mcp config``: the ``mcpServers`` entry that starts this installation from Claude Desktop.

Everything that depends on the machine (platform, ``sys.executable``, the home folder, which files
exist, the installed distribution's PEP 610 ``direct_url.json``) comes in as parameters of
:func:`desktop_entry`, so the Windows logic is tested on any OS with ``PureWindowsPath``.
:func:`this_installation` gathers them for the running process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any, Final

from piapi_mcp.media import path_from_file_uri

DISTRIBUTION: Final = "piapi-mcp"
#: The folders (under the home folder) local pictures may be read from unless ``--allowed-dir`` says.
DEFAULT_IMAGE_FOLDERS: Final = ("Pictures", "Desktop", "Downloads")
KEY_PLACEHOLDER: Final = "paste-your-PiAPI-key-here"
#: Where Claude Desktop keeps its configuration.
CLAUDE_CONFIG_LOCATIONS: Final = (
    ("macOS", "~/Library/Application Support/Claude/claude_desktop_config.json"),
    ("Windows", r"%APPDATA%\Claude\claude_desktop_config.json"),
)


@dataclass(frozen=True)
class Installation:
    """What the entry is derived from: where and how this copy of piapi-mcp is installed."""

    #: ``sys.platform`` (``win32``, ``darwin``, ``linux``...).
    platform: str
    #: ``sys.executable``: the interpreter of the environment piapi-mcp is installed in.
    executable: str
    home: str
    #: The working folder, against which relative ``--allowed-dir`` folders are read.
    cwd: str
    #: The variables that locate uv's cache: ``UV_CACHE_DIR``, ``XDG_CACHE_HOME``, ``LOCALAPPDATA``.
    env: Mapping[str, str] = field(default_factory=dict)
    #: The text of the distribution's ``direct_url.json`` (PEP 610): it was installed from a URL or path.
    direct_url: str | None = None
    exists: Callable[[str], bool] = lambda _: False
    which: Callable[[str], str | None] = lambda _: None

    @property
    def flavour(self) -> type[PurePosixPath] | type[PureWindowsPath]:
        """The path flavour of the platform."""
        return PureWindowsPath if self.platform == "win32" else PurePosixPath

    @property
    def pathsep(self) -> str:
        """The separator ``PIAPI_ALLOWED_DIRS`` is split on there (``os.pathsep`` of that platform)."""
        return ";" if self.platform == "win32" else ":"


@dataclass(frozen=True)
class DesktopEntry:
    """The ``mcpServers`` document to print (stdout) and what to tell the user about it (stderr)."""

    document: dict[str, Any]
    notes: list[str]

    def json(self) -> str:
        """The document as pasteable JSON."""
        return json.dumps(self.document, indent=2)


def desktop_entry(
    where: Installation, *, allowed_dirs: Sequence[str] = (), sandbox: bool = False
) -> DesktopEntry:
    """The ``mcpServers`` entry that launches the installation ``where`` describes.

    ``allowed_dirs`` replace the default folders (``DEFAULT_IMAGE_FOLDERS`` that exist under the home
    folder; all of them when none exists). With ``sandbox`` the server runs on its simulator and the
    entry carries no key. A command inside uv's cache (``uvx`` runs from there) is not printed: that
    folder is temporary, so the entry runs ``uvx --from SOURCE piapi-mcp`` instead.
    """
    flavour = where.flavour
    notes: list[str] = []
    home = flavour(where.home)
    folders = [_absolute(flavour, raw, home, flavour(where.cwd)) for raw in allowed_dirs]
    if folders:
        notes.append(f"Local pictures may be read from {', '.join(map(str, folders))} (PIAPI_ALLOWED_DIRS).")
        missing = [str(folder) for folder in folders if not where.exists(str(folder))]
        if missing:
            notes.append(f"These folders do not exist (yet): {', '.join(missing)}.")
    else:
        defaults: list[PurePath] = [home / name for name in DEFAULT_IMAGE_FOLDERS]
        folders = [folder for folder in defaults if where.exists(str(folder))] or defaults
        notes.append(
            f"Local pictures may be read from {', '.join(map(str, folders))} (PIAPI_ALLOWED_DIRS); "
            "choose others with --allowed-dir DIR (repeatable)."
        )
    server_args = ["--sandbox"] if sandbox else []
    env = {"PIAPI_ALLOWED_DIRS": where.pathsep.join(map(str, folders))}
    if not sandbox:
        env = {"PIAPI_API_KEY": KEY_PLACEHOLDER, **env}
        notes.append("Replace paste-your-PiAPI-key-here with your key from https://piapi.ai/workspace/key.")
    command = _installed_command(where)
    cache = _uv_cache_folder(where, command) or _uv_cache_folder(where, where.executable)
    if cache is not None:
        source = install_source(where.direct_url, flavour)
        notes.append(
            f"This piapi-mcp runs from uv's cache ({cache}), a temporary folder uv may delete at any time, "
            f"so the entry runs it through uvx from {source} instead."
        )
        uvx = where.which("uvx")
        entry: dict[str, Any] = {
            "command": uvx or "uvx",
            "args": ["--from", source, DISTRIBUTION, *server_args],
            "env": env,
        }
        if uvx is None:
            notes.append('uvx is not on PATH here: install uv, or put uvx\'s full path in "command".')
    else:
        entry = {"command": command, "args": server_args, "env": env}
    places = "; ".join(f"{system}: {location}" for system, location in CLAUDE_CONFIG_LOCATIONS)
    notes.append(
        f'Put the "piapi" entry under "mcpServers" in Claude Desktop\'s config file ({places}), '
        "then restart Claude Desktop."
    )
    return DesktopEntry({"mcpServers": {"piapi": entry}}, notes)


def _absolute(
    flavour: type[PurePosixPath] | type[PureWindowsPath], raw: str, home: PurePath, cwd: PurePath
) -> PurePath:
    """``raw`` as an absolute folder: ``~`` is the home folder, a relative one is read from ``cwd``."""
    if raw == "~" or raw.startswith(("~/", "~\\")):
        return home / raw[2:] if len(raw) > 1 else home
    path = flavour(raw)
    return path if path.is_absolute() else cwd / path


def _installed_command(where: Installation) -> str:
    """The absolute path of the ``piapi-mcp`` script of ``where``'s environment, else the bare name.

    Windows: ``Scripts\\piapi-mcp.exe`` beside a venv's ``python.exe``, or in ``Scripts`` under a
    base install's folder.
    """
    folder = where.flavour(where.executable).parent
    if where.platform == "win32":
        candidates = [folder / "piapi-mcp.exe", folder / "Scripts" / "piapi-mcp.exe"]
    else:
        candidates = [folder / "piapi-mcp"]
    for candidate in candidates:
        if where.exists(str(candidate)):
            return str(candidate)
    return where.which(DISTRIBUTION) or DISTRIBUTION


def _uv_cache_folder(where: Installation, command: str) -> str | None:
    """The uv cache folder ``command`` lies in (uvx's temporary environments live there), or ``None``."""
    flavour = where.flavour
    path = flavour(command)
    if not path.is_absolute():
        return None
    home = flavour(where.home)
    caches = [
        home / ".cache" / "uv",
        home / "Library" / "Caches" / "uv",
        home / "AppData" / "Local" / "uv" / "cache",
    ]
    for name, tail in (("UV_CACHE_DIR", ()), ("XDG_CACHE_HOME", ("uv",)), ("LOCALAPPDATA", ("uv", "cache"))):
        if where.env.get(name):
            caches.append(flavour(where.env[name], *tail))
    fold = str.casefold if flavour is PureWindowsPath else str
    parts = [fold(part) for part in path.parts]
    for cache in caches:
        prefix = [fold(part) for part in cache.parts]
        if parts[: len(prefix)] == prefix:
            return str(cache)
    # Any other uv cache: uvx's environments are in its archive-v0 folder.
    if "archive-v0" in parts:
        return str(flavour(*path.parts[: parts.index("archive-v0")]))
    return None


def install_source(direct_url: str | None, flavour: type[PurePosixPath] | type[PureWindowsPath]) -> str:
    """What ``uvx --from`` installs from: the PEP 610 URL (git, archive) or local folder, else the name."""
    try:
        info = json.loads(direct_url) if direct_url else None
    except ValueError:
        info = None
    if not isinstance(info, dict) or not isinstance(info.get("url"), str):
        return DISTRIBUTION
    url: str = info["url"]
    vcs = info.get("vcs_info")
    if isinstance(vcs, dict) and isinstance(vcs.get("vcs"), str):
        revision = vcs.get("requested_revision")
        prefix = "" if url.startswith(f"{vcs['vcs']}+") else f"{vcs['vcs']}+"
        return f"{prefix}{url}" + (f"@{revision}" if isinstance(revision, str) and revision else "")
    if url.lower().startswith("file://"):
        local = path_from_file_uri(url, flavour)
        return str(local) if local is not None else DISTRIBUTION
    return url


def this_installation() -> Installation:
    """The running installation: this interpreter, home folder, and the distribution's ``direct_url.json``."""
    try:
        direct_url = distribution(DISTRIBUTION).read_text("direct_url.json")
    except PackageNotFoundError:
        direct_url = None
    return Installation(
        platform=sys.platform,
        executable=sys.executable,
        home=str(Path.home()),
        cwd=os.getcwd(),
        env={
            name: os.environ[name]
            for name in ("UV_CACHE_DIR", "XDG_CACHE_HOME", "LOCALAPPDATA")
            if name in os.environ
        },
        direct_url=direct_url,
        exists=os.path.exists,
        which=shutil.which,
    )
