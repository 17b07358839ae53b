"""A refused local path says why the host's roots did not help: on protocol 2026-07-28 the server cannot
ask for them, and a 2025 host may declare none; either way the sentence names PIAPI_ALLOWED_DIRS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.types import ListRootsResult, Root

from piapi_mcp import ManualClock, PiAPISimulator
from tests.conftest import make_server
from tests.helpers import png_bytes, text_of

pytestmark = pytest.mark.anyio


def _pictures(tmp_path: Path) -> tuple[Path, Path]:
    """A picture in ``Pictures`` and one in ``elsewhere``."""
    inside, outside = tmp_path / "Pictures" / "cat.png", tmp_path / "elsewhere" / "pic.png"
    for path in (inside, outside):
        path.parent.mkdir()
        path.write_bytes(png_bytes())
    return inside, outside


async def _edit(client: Client, path: Path) -> Any:
    return await client.call_tool("kontext_edit", {"prompt": "p", "image": str(path), "wait_seconds": 0})


def _roots_of(folder: Path) -> Any:
    async def roots(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=folder.as_uri(), name="pictures")])

    return roots


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_refused_path_says_whether_the_host_could_share_roots_and_names_the_setting(
    mode: str, tmp_path: Path, simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    inside, outside = _pictures(tmp_path)
    server = make_server(simulator, clock, http, allowed_dirs=[inside.parent])
    async with Client(server, mode=mode) as client:
        accepted = await _edit(client, inside)
        refused = await _edit(client, outside)
        version = client.protocol_version

    assert not accepted.is_error, text_of(accepted)
    message = text_of(refused)
    assert refused.is_error and "outside the folders" in message and "PIAPI_ALLOWED_DIRS" in message
    assert str(inside.parent.resolve()) in message
    if mode == "auto":
        assert version == "2026-07-28"
        assert "this MCP host cannot share its roots (protocol 2026-07-28)" in message, message
        assert "set PIAPI_ALLOWED_DIRS to the folders to allow" in message, message
    else:
        # The in-memory 2025 client declares no roots capability (as Claude Desktop does).
        assert "this MCP host shares no roots" in message, message
    assert len(simulator.uploads) == 1


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_with_no_folder_allowed_the_refusal_says_the_host_shares_none(
    mode: str, tmp_path: Path, simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    _, outside = _pictures(tmp_path)
    server = make_server(simulator, clock, http, allowed_dirs=[])
    async with Client(server, mode=mode) as client:
        refused = await _edit(client, outside)

    message = text_of(refused)
    assert refused.is_error and "no folder is allowed and this MCP host" in message, message
    assert "Set PIAPI_ALLOWED_DIRS" in message and simulator.uploads == {}


async def test_on_2026_07_28_a_roots_callback_cannot_help_and_the_refusal_says_so(
    tmp_path: Path, simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    inside, _ = _pictures(tmp_path)
    server = make_server(simulator, clock, http, allowed_dirs=[])
    async with Client(server, mode="auto", list_roots_callback=_roots_of(inside.parent)) as client:
        refused = await _edit(client, inside)

    message = text_of(refused)
    assert refused.is_error and "cannot share its roots (protocol 2026-07-28)" in message, message
    assert "PIAPI_ALLOWED_DIRS" in message and simulator.uploads == {}


async def test_a_2025_host_that_shares_roots_gets_its_folders_and_the_plain_refusal(
    tmp_path: Path, simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    inside, outside = _pictures(tmp_path)
    server = make_server(simulator, clock, http, allowed_dirs=[])
    async with Client(server, mode="legacy", list_roots_callback=_roots_of(inside.parent)) as client:
        accepted = await _edit(client, inside)
        refused = await _edit(client, outside)

    assert not accepted.is_error, text_of(accepted)
    message = text_of(refused)
    assert refused.is_error and "add its folder to PIAPI_ALLOWED_DIRS" in message, message
    assert "roots" not in message


async def test_over_http_settings_the_refusal_does_not_blame_the_hosts_roots(
    tmp_path: Path, simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """Hosted over HTTP, roots are never used: the refusal only names the setting."""
    inside, outside = _pictures(tmp_path)
    server = make_server(simulator, clock, http, allowed_dirs=[inside.parent], use_client_roots=False)
    async with Client(server) as client:
        refused = await _edit(client, outside)

    message = text_of(refused)
    assert refused.is_error and "PIAPI_ALLOWED_DIRS" in message and "roots" not in message, message
