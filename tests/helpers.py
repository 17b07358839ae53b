"""What several test files share: the tool names (derived from the catalog), result readers, tools/list views.

``python -m tests.helpers`` prints README's tools table as ``tools/list`` publishes it (the rows
``test_tools_list.py`` checks README against).
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, ResourceLink, TextContent, Tool
from PIL import Image

from piapi_mcp import ManualClock, PiAPISimulator, SimulatorControls
from piapi_mcp.catalog import CATALOG
from piapi_mcp.media import OutputSaver
from tests.conftest import API_KEY

#: The tools every server has whatever the catalog holds.
GENERIC_TOOLS: Final = frozenset({"run_task", "get_task", "cancel_task", "list_tasks", "get_account"})
#: The curated tools: one per catalog spec that declares one.
CURATED_TOOLS: Final = frozenset(spec.tool.name for spec in CATALOG.tools() if spec.tool is not None)
TOOLS: Final = CURATED_TOOLS | GENERIC_TOOLS
#: A valid kontext_edit call.
EDIT: Final = {"prompt": "make the sky purple", "image": "https://example.com/photo.png"}


def text_of(result: CallToolResult) -> str:
    """The text blocks of a result, joined."""
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def links_of(result: CallToolResult) -> list[ResourceLink]:
    """The resource links of a result."""
    return [block for block in result.content if isinstance(block, ResourceLink)]


def tools_list_json(tools: list[Tool]) -> str:
    """``tools/list``'s tools as a host receives them, as compact JSON (what the budget counts)."""
    return json.dumps(
        [tool.model_dump(by_alias=True, exclude_none=True, mode="json") for tool in tools],
        separators=(",", ":"),
    )


def tools_table(tools: list[Tool]) -> list[str]:
    """README's tools-table rows: one per argument, with its default (or ``required``) and description."""
    rows = []
    for tool in tools:
        required = set(tool.input_schema.get("required", []))
        for name, prop in tool.input_schema["properties"].items():
            if name in required:
                default = "required"
            elif prop.get("default") is None:
                default = "optional"  # its description says what happens when it is left out
            else:
                default = f"`{json.dumps(prop['default'])}`"
            rows.append(f"| `{tool.name}` | `{name}` | {default} | {prop.get('description', '')} |")
    return rows


async def published_tools() -> list[Tool]:
    """``tools/list`` of a server over an idle simulator, read through the MCP client."""
    from tests.conftest import API_KEY, SIM_BASE_URL, make_server

    clock = ManualClock()
    simulator = PiAPISimulator(clock, SimulatorControls(api_keys=frozenset({API_KEY})))
    async with (
        httpx2.AsyncClient(transport=httpx2.ASGITransport(simulator.app), base_url=SIM_BASE_URL) as http,
        Client(make_server(simulator, clock, http)) as client,
    ):
        return (await client.list_tools()).tools


def published_schemas() -> dict[str, dict[str, Any]]:
    """Each published tool's input schema, by tool name (read once, at import of a test module)."""
    return {tool.name: tool.input_schema for tool in anyio.run(published_tools)}


if __name__ == "__main__":
    print("\n".join(tools_table(anyio.run(published_tools))))


def png_bytes(size: tuple[int, int] = (64, 48), color: str = "orange") -> bytes:
    """A small real PNG."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


@asynccontextmanager
async def saving_client(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, folder: Path, **settings: Any
) -> AsyncIterator[Client]:
    """An MCP client on a server that reads pictures from ``folder/in`` and saves outputs (with previews)."""
    from tests.conftest import make_server

    (folder / "in").mkdir(parents=True, exist_ok=True)
    saver = OutputSaver(http, folder / "out")
    server = make_server(
        simulator, clock, http, allowed_dirs=[folder / "in"], outputs=saver, preview=True, **settings
    )
    async with Client(server) as client:
        yield client


def stdio_server(sim_url: str, outputs: Path, **env: str) -> StdioServerParameters:
    """``python -m piapi_mcp`` over stdio as a host starts it: an explicit, near-empty environment that
    points it at the simulator at ``sim_url``, saves into ``outputs``, keeps state in the test's folder."""
    base = {
        "PIAPI_API_KEY": API_KEY,
        "PIAPI_BASE_URL": sim_url,
        "PIAPI_UPLOAD_URL": f"{sim_url}/api/ephemeral_resource",
        "PIAPI_OUTPUT_DIR": str(outputs),
        "PIAPI_STATE_DIR": os.environ["PIAPI_STATE_DIR"],
        "PATH": os.environ.get("PATH", ""),
    }
    return StdioServerParameters(command=sys.executable, args=["-m", "piapi_mcp"], env={**base, **env})
