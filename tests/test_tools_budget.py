"""What tools/list costs a host's context: at most 16,000 bytes of compact JSON (plus the task card's links),
measured as the host gets it.

Hosts load every tool's name, description and schemas into the model's context on every turn, so
the catalog is read on demand from resources instead, the "do not create it again" guidance is said
once (the server's instructions and a result's ``next``), and schemas carry no per-property titles.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from mcp import Client

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.card import task_card_link
from piapi_mcp.server import INSTRUCTIONS
from tests.conftest import hosted
from tests.helpers import EDIT, TOOLS, tools_list_json
from tests.test_task_card_resource import TASK_TOOLS

pytestmark = pytest.mark.anyio

#: Issue 12 links each task tool to the task card (MCP Apps, ``_meta.ui.resourceUri``): the budget
#: grows by exactly what those links cost, no more (``test_task_card_resource`` checks it is all they add).
TASK_CARD_LINK = ',"_meta":' + json.dumps(task_card_link(), separators=(",", ":"))
#: Issue 9's budget for all its tools (issue 8's, 12,000, held before get_account and result costs),
#: plus the task card's links.
TOOLS_LIST_BUDGET = 16_000 + len(TASK_TOOLS) * len(TASK_CARD_LINK.encode())
MODERN = "2026-07-28"


async def test_tools_list_fits_in_16000_bytes_of_compact_json(mcp_client: Client) -> None:
    """The whole tools/list (every tool, its schemas and annotations), compact, is at most 16,000 bytes
    plus the task card's links."""
    tools = (await mcp_client.list_tools()).tools
    size = len(tools_list_json(tools).encode("utf-8"))

    assert {tool.name for tool in tools} == TOOLS
    breakdown = {tool.name: len(tools_list_json([tool]).encode()) for tool in tools}
    assert size <= TOOLS_LIST_BUDGET, f"tools/list is {size} bytes: {breakdown}"


async def test_the_measure_is_the_tools_list_a_host_receives_over_http(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """What is counted is the ``tools`` of a raw tools/list answer on the wire: same content, same size."""
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0"},
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        },
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/list",
    }
    async with hosted(simulator, clock, http) as url:
        async with httpx2.AsyncClient(trust_env=False, timeout=10) as raw:
            answer = await raw.post(f"{url}/mcp", json=request, headers=headers)
        async with Client(f"{url}/mcp") as client:
            tools = (await client.list_tools()).tools

    assert answer.status_code == 200, answer.text
    wire: list[dict[str, Any]] = _json_rpc_result(answer)["tools"]
    counted = tools_list_json(tools)
    # The same objects (the wire's key order differs), so the same number of bytes.
    assert wire == json.loads(counted)
    assert len(json.dumps(wire, separators=(",", ":")).encode()) == len(counted.encode())


def _json_rpc_result(answer: httpx2.Response) -> dict[str, Any]:
    """The ``result`` of a JSON-RPC answer sent as JSON or as one server-sent event."""
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        data = [
            line.removeprefix("data:").strip()
            for line in answer.text.splitlines()
            if line.startswith("data:")
        ]
        message = json.loads(data[-1])
    else:
        message = answer.json()
    result: dict[str, Any] = message["result"]
    return result


async def test_the_do_not_create_again_guidance_is_said_once_not_in_every_tool(mcp_client: Client) -> None:
    """Tool and argument descriptions leave it to the instructions and to an unfinished result's ``next``."""
    tools = (await mcp_client.list_tools()).tools
    pending = await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

    assert "Never create the same task again" in INSTRUCTIONS and "get_task" in INSTRUCTIONS
    assert "do not create it again" in (pending.structured_content or {})["next"]
    for tool in tools:
        described = [
            tool.description or "",
            *(p.get("description", "") for p in tool.input_schema["properties"].values()),
        ]
        assert not any("again" in text for text in described), tool.name


async def test_published_schemas_carry_no_titles_and_no_model_docstrings(mcp_client: Client) -> None:
    """pydantic's titles (each name again, in words) and class docstrings are not published; field prose is."""
    for tool in (await mcp_client.list_tools()).tools:
        for schema in (tool.input_schema, tool.output_schema or {}):
            objects = list(_schemas_in(schema))
            assert not any("title" in node for node in objects), tool.name
            assert not any("description" in node for node in objects if "properties" in node), tool.name
        assert all("description" in prop for prop in tool.input_schema["properties"].values()), tool.name


def _schemas_in(schema: Any) -> Any:
    """Every schema object inside ``schema`` (itself, its properties, definitions and subschemas)."""
    if isinstance(schema, list):
        for item in schema:
            yield from _schemas_in(item)
    elif isinstance(schema, dict):
        yield schema
        for key, value in schema.items():
            if key in ("properties", "$defs"):
                for sub in value.values():
                    yield from _schemas_in(sub)
            elif key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties"):
                yield from _schemas_in(value)
