"""``python -m piapi_mcp``: the same as the ``piapi-mcp`` command."""

from piapi_mcp.cli import main

if __name__ == "__main__":
    main()
