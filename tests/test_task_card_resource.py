"""The task card (issue 12): an MCP App every task tool links, served as the extension specifies, and
invisible in the results: a host with MCP Apps and one without get the same bytes."""

from __future__ import annotations

import json
import os
import runpy
import sys
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.extension import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID, Apps
from mcp.types import CallToolResult, TextResourceContents
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from piapi_mcp import ManualClock, PiAPIClient, PiAPISimulator, SimulatorControls, create_server
from piapi_mcp.card import PIAPI_OUTPUT_ORIGINS, TASK_CARD_URI
from piapi_mcp.catalog import CATALOG
from piapi_mcp.client import DEFAULT_BASE_URL
from tests.conftest import API_KEY, SIM_BASE_URL, make_server
from tests.helpers import CURATED_TOOLS, EDIT, TOOLS, tools_list_json
from tests.test_distribution import wheel_metadata as wheel_metadata

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
#: The tools whose results are a task: they link the card.
TASK_TOOLS = CURATED_TOOLS | {"run_task", "get_task", "cancel_task"}
#: A client that declares MCP Apps as the extension says (the identifier, and the app MIME type).
APPS = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
#: Placeholder output URLs of PiAPI's own docs (Hailuo's example): no real output host.
DOC_PLACEHOLDERS = {"http://example.com"}


def _the_link_apps_tool_stamps() -> dict[str, Any] | None:
    """The ``_meta`` the SDK's ``Apps.tool`` gives a tool bound to the card."""
    apps = Apps()
    apps.tool(resource_uri=TASK_CARD_URI)(lambda: None)
    apps.add_html_resource(TASK_CARD_URI, "<!doctype html>")
    return apps.tools()[0].meta


def _card(read: list[Any]) -> TextResourceContents:
    (content,) = read
    assert isinstance(content, TextResourceContents)
    return content


async def test_every_task_tool_links_the_task_card_and_the_others_do_not(mcp_client: Client) -> None:
    """kontext_edit, the curated tools, run_task, get_task and cancel_task carry ``_meta.ui.resourceUri``."""
    tools = {tool.name: tool for tool in (await mcp_client.list_tools()).tools}
    link = _the_link_apps_tool_stamps()

    assert link == {"ui": {"resourceUri": "ui://piapi-mcp/task.html"}}
    assert set(tools) == TOOLS and "kontext_edit" in TASK_TOOLS
    assert {name: tool.meta for name, tool in tools.items() if name in TASK_TOOLS} == dict.fromkeys(
        TASK_TOOLS, link
    )
    assert tools["list_tasks"].meta is None and tools["get_account"].meta is None


async def test_the_server_advertises_the_mcp_apps_extension_where_the_protocol_has_extensions(
    mcp_client: Client,
) -> None:
    """2026-07-28 carries ``capabilities.extensions``; 2025-11-25 has no such field (the SDK sends none)."""
    capabilities = mcp_client.server_capabilities
    modern = mcp_client.protocol_version in MODERN_PROTOCOL_VERSIONS

    assert capabilities is not None
    assert capabilities.extensions == ({EXTENSION_ID: {}} if modern else None)


async def test_reading_the_task_card_gives_the_packaged_html_as_an_mcp_app_with_its_media_origins(
    mcp_client: Client,
) -> None:
    """The HTML is the package's file; the CSP lets it load media from PiAPI's outputs and the simulator."""
    card = _card((await mcp_client.read_resource(TASK_CARD_URI)).contents)
    listed = {str(resource.uri): resource for resource in (await mcp_client.list_resources()).resources}

    assert card.mime_type == "text/html;profile=mcp-app" == APP_MIME_TYPE
    assert card.text == files("piapi_mcp").joinpath("ui", "task.html").read_text(encoding="utf-8")
    assert card.text.lstrip().lower().startswith("<!doctype html") and "<title>" in card.text
    assert card.meta == {
        "ui": {"csp": {"resourceDomains": [*PIAPI_OUTPUT_ORIGINS, SIM_BASE_URL]}, "prefersBorder": True}
    }
    assert "https://img.theapi.app" in PIAPI_OUTPUT_ORIGINS
    assert listed[TASK_CARD_URI].mime_type == APP_MIME_TYPE


async def test_against_piapi_itself_the_card_loads_media_from_piapi_output_origins_only() -> None:
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(_no_network)) as http:
        server = create_server(PiAPIClient(http, api_key=API_KEY, base_url=DEFAULT_BASE_URL))
        async with Client(server, raise_exceptions=True) as client:
            card = _card((await client.read_resource(TASK_CARD_URI)).contents)

    assert card.meta is not None
    assert card.meta["ui"]["csp"] == {"resourceDomains": list(PIAPI_OUTPUT_ORIGINS)}


def _no_network(request: httpx2.Request) -> httpx2.Response:
    raise AssertionError(f"no request expected, got {request.url}")


def test_the_card_may_show_media_from_every_host_piapi_documents_active_outputs_on() -> None:
    """Every output URL of every active catalog entry's documented example is on a declared origin."""
    seen: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            parts = urlsplit(value)
            seen.add(f"{parts.scheme}://{parts.netloc}")
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    for spec in CATALOG.all():
        if spec.status == "active":
            walk(spec.output_example)

    uncovered = {origin for origin in seen - DOC_PLACEHOLDERS if not _declared(origin)}
    assert len(seen) >= 5 and uncovered == set()


def _declared(origin: str) -> bool:
    """Whether a CSP source list of PIAPI_OUTPUT_ORIGINS (``*.`` any subdomain) matches ``origin``."""
    scheme, _, host = origin.partition("://")
    for source in PIAPI_OUTPUT_ORIGINS:
        source_scheme, _, source_host = source.partition("://")
        if scheme != source_scheme:
            continue
        if source_host == host or (source_host.startswith("*.") and host.endswith(source_host[1:])):
            return True
    return False


@pytest.mark.timeout(60)
async def test_the_sandbox_card_may_load_media_from_the_simulator_on_loopback(tmp_path: Path) -> None:
    """``piapi-mcp --sandbox`` over stdio: the simulator serves outputs on loopback, and the CSP says so."""
    env = {
        "PIAPI_STATE_DIR": os.environ["PIAPI_STATE_DIR"],
        "PIAPI_OUTPUT_DIR": str(tmp_path / "out"),
        "PATH": os.environ.get("PATH", ""),
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "piapi_mcp", "--sandbox"], env=env)
    with anyio.fail_after(45):
        async with Client(params) as client:
            card = _card((await client.read_resource(TASK_CARD_URI)).contents)
            run = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 60})

    assert card.meta is not None
    declared = card.meta["ui"]["csp"]["resourceDomains"]
    assert declared[: len(PIAPI_OUTPUT_ORIGINS)] == list(PIAPI_OUTPUT_ORIGINS)
    (loopback,) = declared[len(PIAPI_OUTPUT_ORIGINS) :]
    assert urlsplit(loopback).hostname == "127.0.0.1" and urlsplit(loopback).port
    urls = [output["url"] for output in (run.structured_content or {})["outputs"]]
    assert urls and all(url.startswith(f"{loopback}/") for url in urls), (urls, loopback)


async def test_without_the_card_tools_list_differs_only_by_the_links(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """The card costs hosts without MCP Apps the ``_meta`` links in tools/list and not one byte more."""
    async with Client(make_server(simulator, clock, http), raise_exceptions=True) as client:
        linked = (await client.list_tools()).tools
    async with Client(make_server(simulator, clock, http, task_card=False), raise_exceptions=True) as client:
        plain = (await client.list_tools()).tools
        capabilities = client.server_capabilities
        resources = {str(resource.uri) for resource in (await client.list_resources()).resources}

    link_bytes = len(b',"_meta":') + len(json.dumps(_the_link_apps_tool_stamps(), separators=(",", ":")))
    assert [tool.model_copy(update={"meta": None}) for tool in linked] == plain
    assert (
        len(tools_list_json(linked).encode()) - len(tools_list_json(plain).encode())
        == len(TASK_TOOLS) * link_bytes
    )
    assert capabilities is not None and not capabilities.extensions and TASK_CARD_URI not in resources


Script = Callable[[Client], Awaitable[list[CallToolResult]]]


async def _completed_edit(client: Client) -> list[CallToolResult]:
    return [await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 60})]


async def _running_then_looked_up(client: Client) -> list[CallToolResult]:
    started = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
    task_id = (started.structured_content or {})["task_id"]
    later = await client.call_tool("get_task", {"task_id": task_id, "wait_seconds": 3})
    return [started, later]


async def _cancelled(client: Client) -> list[CallToolResult]:
    started = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
    task_id = (started.structured_content or {})["task_id"]
    return [started, await client.call_tool("cancel_task", {"task_id": task_id})]


SCRIPTS: dict[str, tuple[Script, bool]] = {
    "completed": (_completed_edit, False),
    "running": (_running_then_looked_up, False),
    "failed": (_completed_edit, True),
    "cancelled": (_cancelled, False),
}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("scenario", list(SCRIPTS))
async def test_a_host_with_mcp_apps_and_one_without_get_the_same_results_as_a_server_without_the_card(
    scenario: str, mode: str
) -> None:
    """Content blocks and structured content, byte for byte (task ids aside, which PiAPI picks afresh)."""
    script, fail = SCRIPTS[scenario]
    with_apps = await _results(script, fail, mode, card=True, apps=True)
    without_apps = await _results(script, fail, mode, card=True, apps=False)
    no_card = await _results(script, fail, mode, card=False, apps=False)

    assert with_apps == without_apps == no_card
    statuses = [json.loads(result)["structured"]["status"] for result in no_card]
    expected = {
        "completed": ["completed"],
        "running": ["pending", "processing"],
        "failed": ["failed"],
        "cancelled": ["pending", "cancelled"],
    }
    assert statuses == expected[scenario]


async def _results(script: Script, fail: bool, mode: str, *, card: bool, apps: bool) -> list[str]:
    """The script's results on a fresh simulator, as JSON with the task ids replaced by ``<task>``."""
    clock = ManualClock()
    simulator = PiAPISimulator(clock, SimulatorControls(api_keys=frozenset({API_KEY}), fail_tasks=fail))
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(simulator.app), base_url=SIM_BASE_URL
    ) as http:
        server = make_server(simulator, clock, http, task_card=card)
        async with Client(
            server, raise_exceptions=True, mode=mode, extensions=[APPS] if apps else None
        ) as client:
            results = await script(client)
    ids = set(simulator.tasks)
    shown = []
    for result in results:
        text = json.dumps(
            {
                "content": [block.model_dump(by_alias=True, mode="json") for block in result.content],
                "structured": result.structured_content,
                "is_error": result.is_error,
            },
            sort_keys=True,
        )
        for task_id in ids:
            text = text.replace(task_id, "<task>")
        shown.append(text)
    return shown


def test_the_task_card_html_is_in_the_wheel(wheel_metadata: tuple[Any, set[str]]) -> None:
    _, names = wheel_metadata

    assert "piapi_mcp/ui/task.html" in names


def test_the_bundle_stages_the_task_card_html(tmp_path: Path) -> None:
    staged = runpy.run_path(str(ROOT / "scripts" / "build_bundle.py"))["stage"](tmp_path)

    packaged = files("piapi_mcp").joinpath("ui", "task.html").read_text(encoding="utf-8")
    assert (staged / "piapi_mcp" / "ui" / "task.html").read_text(encoding="utf-8") == packaged
