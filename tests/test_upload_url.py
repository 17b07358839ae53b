"""Uploads follow a non-default ``PIAPI_BASE_URL`` when ``PIAPI_UPLOAD_URL`` is unset, and a failed
upload's sentence names the host that was actually tried.

The server is a real subprocess (``python -m piapi_mcp``) configured only through the environment a
user sets; the simulator runs in this process on loopback.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from PIL import Image

from piapi_mcp import Fault, ManualClock, PiAPIClient, PiAPISimulator, ServerSettings, create_server
from piapi_mcp.cli import build_parser
from piapi_mcp.config import Config
from piapi_mcp.loopback import serve_app_on_loopback
from piapi_mcp.simulator.faults import ConnectionFault, FaultyTransport
from tests.conftest import API_KEY, SIM_BASE_URL
from tests.helpers import stdio_server, text_of

pytestmark = pytest.mark.anyio

#: Real seconds for one scenario: the server's start-up dominates it.
SCENARIO_TIMEOUT = 60.0


def picture_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "pictures"
    folder.mkdir()
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 30)).save(out, format="PNG")
    (folder / "cat.png").write_bytes(out.getvalue())
    return folder


def server_without_upload_url(sim_url: str, tmp_path: Path, pictures: Path, **env: str) -> Any:
    """The server as a user configures it: PIAPI_BASE_URL set, PIAPI_UPLOAD_URL not."""
    params = stdio_server(sim_url, tmp_path / "outputs", PIAPI_ALLOWED_DIRS=str(pictures), **env)
    params.env = {name: value for name, value in (params.env or {}).items() if name != "PIAPI_UPLOAD_URL"}
    return params


async def test_a_local_picture_is_uploaded_to_a_non_default_base_url_when_no_upload_url_is_set(
    simulator: PiAPISimulator, tmp_path: Path
) -> None:
    """PIAPI_BASE_URL at the simulator, PIAPI_UPLOAD_URL unset: the upload goes to the simulator."""
    pictures = picture_folder(tmp_path)
    async with serve_app_on_loopback(simulator.app) as sim_url:
        params = server_without_upload_url(sim_url, tmp_path, pictures)
        with anyio.fail_after(SCENARIO_TIMEOUT):
            async with Client(params) as session:
                result = await session.call_tool(
                    "kontext_edit",
                    {"prompt": "make it blue", "image": str(pictures / "cat.png"), "wait_seconds": 0},
                )

    assert not result.is_error, text_of(result)
    (uploaded,) = simulator.uploads
    assert uploaded.startswith(f"{sim_url}/_uploads/")
    (task,) = simulator.tasks.values()
    assert task.input["image"] == uploaded


async def test_a_failed_upload_names_the_host_it_was_sent_to(
    simulator: PiAPISimulator, tmp_path: Path
) -> None:
    """The upload host refuses the file: the tool error names that host (not PiAPI's default one)."""
    pictures = picture_folder(tmp_path)
    simulator.controls.faults.append(Fault(route="upload", status=400))
    async with serve_app_on_loopback(simulator.app) as sim_url:
        params = server_without_upload_url(sim_url, tmp_path, pictures)
        with anyio.fail_after(SCENARIO_TIMEOUT):
            async with Client(params) as session:
                result = await session.call_tool(
                    "kontext_edit",
                    {"prompt": "make it blue", "image": str(pictures / "cat.png"), "wait_seconds": 0},
                )

    assert result.is_error
    host = sim_url.removeprefix("http://")
    assert f"The upload to {host} failed" in text_of(result)
    assert "upload.theapi.app" not in text_of(result)
    assert simulator.tasks == {}


async def test_an_unreachable_upload_url_is_named_with_the_setting_to_check(
    simulator: PiAPISimulator, clock: ManualClock, tmp_path: Path
) -> None:
    """The upload host refuses every connection: the sentence names that host and PIAPI_UPLOAD_URL."""
    pictures = picture_folder(tmp_path)
    refusing = FaultyTransport(
        httpx2.ASGITransport(simulator.app), [ConnectionFault("upload", "refused", times=100)], clock=clock
    )
    async with httpx2.AsyncClient(transport=refusing) as http:
        client = PiAPIClient(
            http,
            api_key=API_KEY,
            base_url=SIM_BASE_URL,
            upload_url="https://uploads.mirror.test/api/ephemeral_resource",
            clock=clock,
            jitter=lambda: 0.5,
        )
        server = create_server(client, ServerSettings(clock=clock, allowed_dirs=[pictures], wait_seconds=0))
        async with Client(server) as session:
            result = await session.call_tool(
                "kontext_edit", {"prompt": "make it blue", "image": str(pictures / "cat.png")}
            )

    assert result.is_error
    text = text_of(result)
    assert "uploads.mirror.test" in text and "PIAPI_UPLOAD_URL" in text, text
    assert "piapi.test" not in text
    assert simulator.uploads == {} and simulator.tasks == {}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "https://upload.theapi.app/api/ephemeral_resource"),
        ({"PIAPI_BASE_URL": "https://api.piapi.ai/"}, "https://upload.theapi.app/api/ephemeral_resource"),
        (
            {"PIAPI_BASE_URL": "https://mirror.example/piapi/"},
            "https://mirror.example/piapi/api/ephemeral_resource",
        ),
        (
            {"PIAPI_BASE_URL": "https://mirror.example", "PIAPI_UPLOAD_URL": "https://up.example/u"},
            "https://up.example/u",
        ),
    ],
)
def test_the_upload_url_follows_the_base_url_only_when_unset_and_not_piapis(
    env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    """PiAPI's own base URL keeps PiAPI's upload host; a given PIAPI_UPLOAD_URL always wins."""
    config = Config.load(build_parser().parse_args([]), {**env, "PIAPI_STATE_DIR": str(tmp_path)})

    assert config.upload_url == expected
