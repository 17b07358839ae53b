"""The floor for cold start: a bare MCP SDK server over stdio with one tool, nothing of ours.

``bench.py`` starts it exactly as it starts ``python -m piapi_mcp`` and times both to ``tools/list``;
what piapi-mcp adds on top of the SDK is the difference.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("bare")


@server.tool()
def echo(text: str) -> str:
    """Return ``text`` unchanged."""
    return text


if __name__ == "__main__":
    server.run()
