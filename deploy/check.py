"""Check a hosted piapi-mcp through its load balancer: list the tools, then run one kontext_edit.

    PIAPI_MCP_AUTH_TOKEN=... python deploy/check.py http://127.0.0.1:8080/mcp

The edit costs credits on real PiAPI; point the replicas at a simulator (PIAPI_BASE_URL) to try for free.
Exits 1 when either step fails.
"""

from __future__ import annotations

import os
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

EDIT = {"prompt": "deploy check: make the sky purple", "image": "https://example.com/deploy-check.png"}


async def check(url: str, token: str) -> int:
    """List the tools and run one edit at ``url``; print what came back; 0 when both worked."""
    with anyio.fail_after(180):
        async with (
            httpx2.AsyncClient(
                trust_env=False,
                headers={"Authorization": f"Bearer {token}"},
                # A call's answer may take as long as its wait: no 5 s read time-out.
                timeout=httpx2.Timeout(30.0, read=300.0),
            ) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            tools = (await client.list_tools()).tools
            print(f"tools/list: {len(tools)} tools ({', '.join(sorted(t.name for t in tools)[:5])}, ...)")
            done = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 120})
            data = done.structured_content or {}
            print(
                f"kontext_edit: is_error={done.is_error} status={data.get('status')} "
                f"task={data.get('task_id')}"
            )
            return 0 if tools and not done.is_error and data.get("status") == "completed" else 1


if __name__ == "__main__":
    token = os.environ.get("PIAPI_MCP_AUTH_TOKEN", "")
    if len(sys.argv) != 2 or not token:
        sys.exit("usage: PIAPI_MCP_AUTH_TOKEN=... python deploy/check.py http://HOST:PORT/mcp")
    sys.exit(anyio.run(check, sys.argv[1], token))
