"""``python -m piapi_mcp.catalog``: print ``docs/models.md`` (every catalog entry) to standard output."""

from __future__ import annotations

import sys

from piapi_mcp.catalog import CATALOG
from piapi_mcp.catalog._docs import models_markdown


def main() -> None:
    """Write the catalog's Markdown page to standard output (UTF-8, whatever the terminal's encoding)."""
    sys.stdout.buffer.write(models_markdown(CATALOG.all()).encode("utf-8"))


if __name__ == "__main__":
    main()
