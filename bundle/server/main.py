"""Start piapi-mcp over stdio inside an MCP Bundle (Claude Desktop runs it with ``uv run``).

The manifest passes the image folders as arguments, because a ``multiple`` directory setting is
expanded only in ``args``, never inside an ``env`` string; they become ``PIAPI_ALLOWED_DIRS``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from piapi_mcp.cli import main

#: Settings the host passes through unexpanded when the user leaves them empty.
_OPTIONAL_ENV = ("PIAPI_OUTPUT_DIR", "PIAPI_WAIT_SECONDS")


def expanded(value: str) -> str | None:
    """``value`` with ``${HOME}`` expanded (defaults may arrive verbatim); ``None`` when unresolved."""
    value = value.replace("${HOME}", str(Path.home())).strip()
    return value if value and "${" not in value else None


def allowed_dirs(argv: list[str]) -> str:
    """The folders given, joined the way ``PIAPI_ALLOWED_DIRS`` reads them."""
    return os.pathsep.join(path for path in map(expanded, argv) if path)


if __name__ == "__main__":
    os.environ["PIAPI_ALLOWED_DIRS"] = allowed_dirs(sys.argv[1:])
    for name in _OPTIONAL_ENV:
        value = expanded(os.environ.pop(name, ""))
        if value:
            os.environ[name] = value
    main([])
