"""Build the MCP Bundle (``dist/piapi-mcp-<version>.mcpb``) for one-click install in Claude Desktop.

    python scripts/build_bundle.py                  stage the bundle and pack it with ``mcpb pack``
    python scripts/build_bundle.py --write-manifest refresh bundle/manifest.json's version and tools

The bundle is this project's source (pyproject.toml, README, LICENSE, ``piapi_mcp``) plus
``bundle/manifest.json`` and ``bundle/server/main.py``: Claude Desktop's ``uv`` runtime installs the
project's dependencies from pyproject.toml and runs the entry point. Needs ``npx`` (Node.js) to pack.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client

from piapi_mcp import PiAPIClient, create_server, package_version
from piapi_mcp.desktop_config import DEFAULT_IMAGE_FOLDERS

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "bundle" / "manifest.json"
MCPB = ("npx", "-y", "@anthropic-ai/mcpb")
PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE")


async def server_tools() -> list[dict[str, str]]:
    """Name and description of every tool, as the server answers ``tools/list``."""
    async with httpx2.AsyncClient() as http:
        server = create_server(PiAPIClient(http, api_key=None))
        async with Client(server) as client:
            tools = (await client.list_tools()).tools
    return [{"name": tool.name, "description": tool.description or ""} for tool in tools]


def refreshed_manifest() -> dict[str, Any]:
    """bundle/manifest.json with the package's version, the server's current tool list and default folders."""
    manifest: dict[str, Any] = json.loads(MANIFEST.read_text(encoding="utf-8"))
    manifest["version"] = package_version()
    manifest["tools"] = anyio.run(server_tools)
    # The same default folders as ``piapi-mcp config``, in mcpb's ${HOME} form.
    manifest["user_config"]["allowed_dirs"]["default"] = [
        f"${{HOME}}/{name}" for name in DEFAULT_IMAGE_FOLDERS
    ]
    return manifest


def write_manifest() -> None:
    """Rewrite bundle/manifest.json from the running code (version, tools, default folders)."""
    MANIFEST.write_text(
        json.dumps(refreshed_manifest(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def stage(into: Path) -> Path:
    """Copy what the bundle holds into ``into`` (an empty folder) and return it."""
    for name in PROJECT_FILES:
        shutil.copy(ROOT / name, into / name)
    shutil.copytree(ROOT / "piapi_mcp", into / "piapi_mcp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "bundle" / "server", into / "server", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(MANIFEST, into / "manifest.json")
    return into


def pack(output: Path) -> Path:
    """Stage the bundle in a temporary folder and pack it to ``output`` with ``mcpb pack``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        staged = stage(Path(folder))
        subprocess.run([*MCPB, "pack", str(staged), str(output)], check=True)
    return output


def main(argv: list[str] | None = None) -> None:
    """Command line of this script."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--write-manifest", action="store_true", help="refresh the manifest's version and tools"
    )
    parser.add_argument("--output", type=Path, default=None, help="the .mcpb to write")
    args = parser.parse_args(argv)
    if args.write_manifest:
        write_manifest()
        print(f"wrote {MANIFEST}")
        return
    if shutil.which("npx") is None:
        sys.exit("build_bundle: npx (Node.js) is needed to pack the bundle; install Node.js and retry.")
    output = args.output or ROOT / "dist" / f"piapi-mcp-{package_version()}.mcpb"
    print(f"wrote {pack(output)}")


if __name__ == "__main__":
    main()
