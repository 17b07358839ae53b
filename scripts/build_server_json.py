"""Generate ``server.json``, this server's entry for the official MCP Registry (its PyPI package form).

    python scripts/build_server_json.py                  print it
    python scripts/build_server_json.py --write          write server.json at the repository root
    python scripts/build_server_json.py --owner NAME     under io.github.NAME/ (the default is OWNER)

Everything comes from the project itself: the name, version and description from pyproject.toml
and ``piapi_mcp._version``, the environment variables from ``piapi_mcp.config.SETTINGS`` (those of
the stdio server: the HTTP transports' own settings do not apply to a registry's stdio install).
The registry accepts the name only from a publisher who proves the namespace: ``io.github.<owner>``
needs a GitHub login as <owner>, so OWNER must be the real GitHub account before publishing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Final

from piapi_mcp._version import __version__
from piapi_mcp.config import (
    ALLOWED_HOSTS_ENV,
    ALLOWED_ORIGINS_ENV,
    AUTH_TOKEN_ENV,
    HEADER_TIMEOUT_ENV,
    LEDGER_URL_ENV,
    MAX_CONNECTIONS_ENV,
    PUBLIC_URL_ENV,
    SETTINGS,
    STATELESS_ENV,
    WEBHOOK_SECRET_ENV,
)

ROOT: Final = Path(__file__).resolve().parent.parent
SERVER_JSON: Final = ROOT / "server.json"
#: The schema version the file declares (vendored for the tests in tests/data/registry/).
SCHEMA_URL: Final = "https://static.modelcontextprotocol.io/schemas/2025-09-29/server.schema.json"
#: The GitHub account that publishes: a placeholder until the project has one (change it, or pass --owner).
OWNER: Final = "piapi-mcp"
#: The key: required and secret; every other setting is optional.
SECRET_SETTINGS: Final = frozenset({"PIAPI_API_KEY"})
#: Settings only the HTTP transports read.
HTTP_ONLY_SETTINGS: Final = frozenset(
    {
        AUTH_TOKEN_ENV,
        ALLOWED_HOSTS_ENV,
        ALLOWED_ORIGINS_ENV,
        HEADER_TIMEOUT_ENV,
        MAX_CONNECTIONS_ENV,
        # a team's deployment (replicas over HTTP); it holds a password (the registry's one secret: the key)
        LEDGER_URL_ENV,
        STATELESS_ENV,
        PUBLIC_URL_ENV,
        WEBHOOK_SECRET_ENV,
    }
)


def server_json(owner: str = OWNER) -> dict[str, Any]:
    """The registry entry, as a JSON object."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    package = project["name"]
    environment = [
        {
            "name": name,
            "description": _portable(text[0].upper() + text[1:] + "."),
            "isRequired": name in SECRET_SETTINGS,
            "isSecret": name in SECRET_SETTINGS,
        }
        for name, text in SETTINGS
        if name not in HTTP_ONLY_SETTINGS
    ]
    return {
        "$schema": SCHEMA_URL,
        "name": f"io.github.{owner}/{package}",
        "description": project["description"],
        "version": __version__,
        "packages": [
            {
                "registryType": "pypi",
                "identifier": package,
                "version": __version__,
                "runtimeHint": "uvx",
                "transport": {"type": "stdio"},
                "environmentVariables": environment,
            }
        ],
    }


def _portable(text: str) -> str:
    """A setting's line as it reads on any OS: the path separator SETTINGS names is this machine's."""
    return text.replace(f"'{os.pathsep}'", "':' (';' on Windows)")


def rendered(owner: str = OWNER) -> str:
    """``server.json``'s text, as committed."""
    return json.dumps(server_json(owner), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print or write server.json."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--write", action="store_true", help="write server.json at the repository root")
    parser.add_argument("--owner", default=OWNER, help=f"GitHub account of the namespace (default {OWNER})")
    args = parser.parse_args(argv)
    text = rendered(args.owner)
    if args.write:
        SERVER_JSON.write_text(text, encoding="utf-8")
        print(f"wrote {SERVER_JSON}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
