"""A restart answers the host's first lists from the state folder, and builds the tools on first need.

The lists must be exactly the ones the code builds: the same bytes on a restart, new ones as soon as a
setting or the code that shapes them changes, and a wrong remembered list is replaced after one call.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client

from piapi_mcp import listings
from piapi_mcp.client import PiAPIClient
from piapi_mcp.listings import FILE_NAME, ListingSettings, listing_key
from piapi_mcp.loopback import serve_app_on_loopback
from piapi_mcp.mcp_server import PiAPIMCPServer, create_deferred_server, create_server, listing_settings
from piapi_mcp.server_settings import ServerSettings
from piapi_mcp.simulator import PiAPISimulator
from piapi_mcp.timing import ManualClock
from tests.conftest import API_KEY, SIM_BASE_URL
from tests.helpers import EDIT, stdio_server, text_of

pytestmark = pytest.mark.anyio


async def _lists(session: Client) -> dict[str, Any]:
    """Everything a host lists at start, as the JSON it receives."""

    def dumped(items: Any) -> list[Any]:
        return [item.model_dump(by_alias=True, exclude_none=True, mode="json") for item in items]

    return {
        "tools": dumped((await session.list_tools()).tools),
        "resources": dumped((await session.list_resources()).resources),
        "templates": dumped((await session.list_resource_templates()).resource_templates),
        "prompts": dumped((await session.list_prompts()).prompts),
    }


def _server(
    http: httpx2.AsyncClient, clock: ManualClock, folder: Path | None, **settings: Any
) -> PiAPIMCPServer:
    client = PiAPIClient(http, api_key=API_KEY, base_url=SIM_BASE_URL, clock=clock, jitter=lambda: 0.5)
    return create_server(client, ServerSettings(clock=clock, **settings), listings_in=folder)


@asynccontextmanager
async def _session(server: PiAPIMCPServer) -> AsyncIterator[Client]:
    async with Client(server, raise_exceptions=True) as session:
        yield session


async def test_a_restart_lists_exactly_what_a_fresh_build_lists_without_building_the_tools(
    http: httpx2.AsyncClient, clock: ManualClock, tmp_path: Path
) -> None:
    async with _session(_server(http, clock, None)) as session:
        built = await _lists(session)
    async with _session(_server(http, clock, tmp_path)) as session:
        first = await _lists(session)
    assert (tmp_path / FILE_NAME).is_file()
    restarted = _server(http, clock, tmp_path)
    async with _session(restarted) as session:
        remembered = await _lists(session)
        assert restarted._tool_manager.list_tools() == []  # answered from the folder: nothing built
        result = await session.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
        assert not result.is_error, text_of(result)
        assert len(restarted._tool_manager.list_tools()) == len(built["tools"])
        assert await _lists(session) == built
    assert first == built and remembered == built
    assert json.dumps(remembered["tools"]) == json.dumps(built["tools"])


async def test_each_setting_the_lists_show_is_listed_anew_on_the_next_start(
    http: httpx2.AsyncClient, clock: ManualClock, tmp_path: Path
) -> None:
    variants: list[dict[str, Any]] = [
        {},
        {"wait_seconds": 12.0},
        {"dedup_seconds": 90.0},
        {"task_card": False},
    ]
    for settings in variants:
        async with _session(_server(http, clock, None, **settings)) as session:
            built = await _lists(session)
        async with _session(_server(http, clock, tmp_path, **settings)) as session:
            assert await _lists(session) == built, settings
    async with _session(_server(http, clock, tmp_path, wait_seconds=12.0)) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert tools["kontext_edit"].input_schema["properties"]["wait_seconds"]["default"] == 12.0


async def test_a_remembered_list_that_is_not_this_codes_is_replaced_after_the_first_call(
    http: httpx2.AsyncClient, clock: ManualClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with _session(_server(http, clock, None)) as session:
        built = await _lists(session)
    async with _session(_server(http, clock, tmp_path)) as session:
        await _lists(session)
    stored = json.loads((tmp_path / FILE_NAME).read_text())
    stored["tools"][0]["description"] = "an old description"
    (tmp_path / FILE_NAME).write_text(json.dumps(stored))
    async with _session(_server(http, clock, tmp_path)) as session:
        assert (await session.list_tools()).tools[0].description == "an old description"
        await session.call_tool("list_tasks", {})
        assert await _lists(session) == built
    assert "was not this code's" in caplog.text
    async with _session(_server(http, clock, tmp_path)) as session:
        assert await _lists(session) == built


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[]", b'{"key": 1}', json.dumps({"key": None, "tools": "x"}).encode(), b"{" * 2_000_000],
    ids=["garbage", "a list", "another key", "wrong shapes", "too large"],
)
async def test_a_listing_file_that_is_not_ours_is_ignored_and_rewritten(
    http: httpx2.AsyncClient, clock: ManualClock, tmp_path: Path, content: bytes
) -> None:
    async with _session(_server(http, clock, None)) as session:
        built = await _lists(session)
    (tmp_path / FILE_NAME).write_bytes(content)
    async with _session(_server(http, clock, tmp_path)) as session:
        assert await _lists(session) == built
    assert json.loads((tmp_path / FILE_NAME).read_text())["tools"] == built["tools"]


async def test_a_state_folder_that_cannot_be_written_only_costs_the_next_start_its_speed(
    http: httpx2.AsyncClient, clock: ManualClock, tmp_path: Path
) -> None:
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")
    async with _session(_server(http, clock, None)) as session:
        built = await _lists(session)
    async with _session(_server(http, clock, blocked)) as session:
        assert await _lists(session) == built
        assert not (await session.call_tool("list_tasks", {})).is_error


def test_the_key_changes_when_any_source_file_of_the_package_changes() -> None:
    settings = ListingSettings(
        media_origins=(SIM_BASE_URL,), wait_seconds=50.0, dedup_seconds=60.0, task_card=True
    )
    source = Path(listings.__file__).parent / "catalog" / "flux.py"
    before = listing_key(settings)
    stat = source.stat()
    try:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert listing_key(settings) != before
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert listing_key(settings) == before


async def test_a_restarted_stdio_server_lists_its_tools_before_importing_the_catalog_or_the_ledger(
    simulator: PiAPISimulator, state_dir: Path, tmp_path: Path
) -> None:
    async with serve_app_on_loopback(simulator.app) as sim_url:
        params = stdio_server(
            sim_url, tmp_path / "outputs", PYTHONPROFILEIMPORTTIME="1", PIAPI_WAIT_SECONDS="20"
        )
        with (tmp_path / "first.log").open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as session:
                built = await _lists(session)
        log = tmp_path / "restart.log"
        with log.open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as session:
                assert await _lists(session) == built
                errlog.flush()
                started = log.read_text()
                assert "piapi_mcp.catalog" not in started and "piapi_mcp.ledger" not in started
                result = await session.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
                assert not result.is_error, text_of(result)
                task_id = (result.structured_content or {})["task_id"]
                listed = await session.call_tool("list_tasks", {})
                assert task_id in text_of(listed)
    assert "piapi_mcp.catalog" in log.read_text() and "piapi_mcp.ledger" in log.read_text()
    assert "piapi_mcp.catalog" in (tmp_path / "first.log").read_text()
    tools = {tool["name"]: tool for tool in built["tools"]}
    assert tools["kontext_edit"]["inputSchema"]["properties"]["wait_seconds"]["default"] == 20


async def test_settings_that_disagree_with_the_listing_key_are_refused_in_one_sentence(
    http: httpx2.AsyncClient, clock: ManualClock, tmp_path: Path
) -> None:
    client = PiAPIClient(http, api_key=API_KEY, base_url=SIM_BASE_URL, clock=clock)
    listing = listing_settings(SIM_BASE_URL, ServerSettings(clock=clock))

    async def settle() -> ServerSettings:
        return ServerSettings(clock=clock, wait_seconds=listing.wait_seconds + 1)

    server = create_deferred_server(client, listing, settle, listings_in=tmp_path)
    async with Client(server) as session:
        result = await session.call_tool("list_tasks", {})
    assert result.is_error
    assert "do not show what the listing key says" in text_of(result)


async def test_credentials_in_the_base_url_are_never_written_to_the_state_folder(
    http: httpx2.AsyncClient, clock: ManualClock, tmp_path: Path
) -> None:
    client = PiAPIClient(http, api_key=API_KEY, base_url="https://user:hunter2@proxy.test", clock=clock)
    async with _session(create_server(client, ServerSettings(clock=clock), listings_in=tmp_path)) as session:
        await _lists(session)
    written = (tmp_path / FILE_NAME).read_text()
    assert "https://proxy.test" in written
    assert "hunter2" not in written and API_KEY not in written
