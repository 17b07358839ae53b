"""Over stdio, against a server speaking PiAPI's contract: run_task completes every kind of task.

The server is a real subprocess (``python -m piapi_mcp``) configured only through the environment a
user would set (``PIAPI_BASE_URL`` pointing at the simulator on loopback); the simulator runs in
this process on a ManualClock that the test moves. Each catalog kind (an image with its preview, a
video, an audio file, a 3D model, a text) comes back with the right links and, for files, a saved
copy whose content is of that kind; ``piapi://models`` lists the whole catalog.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ImageContent, ResourceLink, TextResourceContents

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.catalog import CATALOG
from piapi_mcp.loopback import serve_app_on_loopback
from piapi_mcp.media import sniff_output
from tests.helpers import stdio_server, text_of

pytestmark = pytest.mark.anyio

#: Real seconds for the whole scenario: the server's start-up dominates it.
SCENARIO_TIMEOUT = 60.0


async def run_to_completion(
    session: Client, clock: ManualClock, model: str, task_type: str, task_input: dict[str, Any]
) -> Any:
    """run_task returns the id at once (wait 0); the clock moves past the task; get_task finishes it."""
    started = await session.call_tool(
        "run_task", {"model": model, "task_type": task_type, "input": task_input, "wait_seconds": 0}
    )
    assert not started.is_error, text_of(started)
    clock.advance(600)
    task_id = (started.structured_content or {})["task_id"]
    return await session.call_tool("get_task", {"task_id": task_id})


def saved_file(result: Any, kind: str) -> Path:
    (output,) = [item for item in (result.structured_content or {})["outputs"] if item["kind"] == kind][:1]
    assert output["path"], f"the {kind} was not saved: {output}"
    return Path(output["path"])


async def test_run_task_over_stdio_completes_an_image_a_video_an_audio_a_3d_model_and_a_text(
    simulator: PiAPISimulator, clock: ManualClock, tmp_path: Path
) -> None:
    """Every kind of output comes back linked with its MIME type, files saved, images previewed."""
    outputs = tmp_path / "outputs"
    async with serve_app_on_loopback(simulator.app) as sim_url:
        params = stdio_server(sim_url, outputs)
        with anyio.fail_after(SCENARIO_TIMEOUT):
            async with Client(params) as session:
                image = await run_to_completion(
                    session, clock, "Qubico/flux1-dev", "txt2img", {"prompt": "a lighthouse at dusk"}
                )
                video = await run_to_completion(
                    session, clock, "hailuo", "video_generation", {"prompt": "a paper boat on a rainy street"}
                )
                speech = await run_to_completion(
                    session,
                    clock,
                    "Qubico/tts",
                    "zero-shot",
                    {"gen_text": "Hello there.", "ref_audio": "https://example.com/voice.wav"},
                )
                model3d = await run_to_completion(
                    session,
                    clock,
                    "Qubico/trellis",
                    "image-to-3d",
                    {"image": "https://example.com/chair.png"},
                )
                caption = await run_to_completion(
                    session,
                    clock,
                    "Qubico/joycaption",
                    "joycaption-beta-one",
                    {"image": "https://example.com/photo.png"},
                )
                listed = await session.read_resource("piapi://models")

    for result in (image, video, speech, model3d, caption):
        assert not result.is_error, text_of(result)
        assert (result.structured_content or {})["done"] is True

    image_links = [link for link in image.content if isinstance(link, ResourceLink)]
    assert any(link.mime_type == "image/png" and link.uri.startswith(sim_url) for link in image_links)
    assert [block for block in image.content if isinstance(block, ImageContent)], "no preview"
    assert sniff_output(saved_file(image, "image").read_bytes()[:64]) is not None

    for result, kind, mime in (
        (video, "video", "video/mp4"),
        (speech, "audio", "audio/wav"),
        (model3d, "model3d", "model/gltf-binary"),
    ):
        links = [link for link in result.content if isinstance(link, ResourceLink)]
        assert any(link.mime_type == mime and link.uri.startswith("http") for link in links), (kind, links)
        path = saved_file(result, kind)
        assert path.parent == outputs
        sniffed = sniff_output(path.read_bytes()[:64])
        assert sniffed is not None and sniffed.mime_type == mime, (kind, sniffed)
    # A speech result has nothing to look at; a video's cover and a 3D model's cut-out are images, previewed.
    assert not [block for block in speech.content if isinstance(block, ImageContent)]
    assert [block for block in video.content if isinstance(block, ImageContent)]

    texts = [item for item in (caption.structured_content or {})["outputs"] if item["kind"] == "text"]
    assert texts and texts[0]["text"] and texts[0]["text"] in text_of(caption)

    (contents,) = listed.contents
    assert isinstance(contents, TextResourceContents)
    entries = json.loads(contents.text)["models"]
    assert {(entry["model"], entry["task_type"]) for entry in entries} == {spec.key for spec in CATALOG.all()}


async def test_over_stdio_a_video_the_account_a_retired_model_and_the_daily_budget_behave_as_promised(
    simulator: PiAPISimulator, clock: ManualClock, tmp_path: Path
) -> None:
    """generate_video saves an MP4; get_account reports the balance; Midjourney and a create over
    PIAPI_DAILY_BUDGET_USD are refused in one sentence with nothing sent."""
    outputs = tmp_path / "outputs"
    async with serve_app_on_loopback(simulator.app) as sim_url:
        # One Kling video (US$0.50 listed) fits; a second would not.
        params = stdio_server(sim_url, outputs, PIAPI_DAILY_BUDGET_USD="0.75")
        with anyio.fail_after(SCENARIO_TIMEOUT):
            async with Client(params) as session:
                started = await session.call_tool(
                    "generate_video", {"prompt": "a paper boat on a rainy street", "wait_seconds": 0}
                )
                clock.advance(600)
                task_id = (started.structured_content or {}).get("task_id")
                video = await session.call_tool("get_task", {"task_id": task_id})
                account = await session.call_tool("get_account", {})
                created_before_refusals = simulator.created_count
                retired = await session.call_tool(
                    "run_task",
                    {"model": "midjourney", "task_type": "imagine", "input": {"prompt": "a lighthouse"}},
                )
                over_budget = await session.call_tool(
                    "generate_video", {"prompt": "a paper boat on a rainy street", "force_new": True}
                )

    assert not started.is_error and not video.is_error, text_of(started) + text_of(video)
    links = [link for link in video.content if isinstance(link, ResourceLink)]
    assert any(link.mime_type == "video/mp4" for link in links), links
    path = saved_file(video, "video")
    sniffed = sniff_output(path.read_bytes()[:64])
    assert path.parent == outputs and sniffed is not None and sniffed.mime_type == "video/mp4"

    assert not account.is_error, text_of(account)
    figures = account.structured_content or {}
    assert figures["balance_usd"] is not None and figures["daily_budget_usd"] == 0.75
    assert figures["spent_24h_usd"] > 0

    for refused in (retired, over_budget):
        assert refused.is_error
        said = text_of(refused).removeprefix(
            f"Error executing tool {'run_task' if refused is retired else 'generate_video'}: "
        )
        assert "\n" not in said and said.rstrip().endswith((".", ")")), said
    assert "discontinued" in text_of(retired)
    assert "budget" in text_of(over_budget).lower()
    assert simulator.created_count == created_before_refusals == 1
