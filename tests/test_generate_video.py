"""generate_video: one tool over the video families, each call routed to its family's spec and fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.arguments import lean_schema
from piapi_mcp.catalog.video import FAMILIES, VideoArguments
from tests.helpers import links_of, png_bytes, saving_client, text_of

pytestmark = pytest.mark.anyio

START = "https://example.com/first.png"
END = "https://example.com/last.png"


def only_task(simulator: PiAPISimulator) -> Any:
    (task,) = simulator.tasks.values()
    return task


async def test_text_to_video_returns_a_task_id_then_get_task_gives_the_saved_video_as_a_video_mp4_link(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    """A prompt alone runs Kling 3.0 (version injected); the call returns at once, get_task brings the video."""
    async with saving_client(simulator, clock, http, tmp_path) as client:
        started = await client.call_tool(
            "generate_video", {"prompt": "a paper boat on a river", "wait_seconds": 0}
        )
        assert not started.is_error, text_of(started)
        first: dict[str, Any] = started.structured_content or {}
        assert first["done"] is False and first["task_id"]
        task = only_task(simulator)
        assert (task.model, task.task_type) == ("kling", "video_generation")
        assert task.input["version"] == "3.0" and task.input["prompt"] == "a paper boat on a river"
        assert not {"image_url", "image_tail_url", "duration", "aspect_ratio"} & set(task.input)

        clock.advance(simulator.controls.queue_seconds + simulator.controls.duration)
        result = await client.call_tool("get_task", {"task_id": first["task_id"], "wait_seconds": 30})

    assert not result.is_error, text_of(result)
    data: dict[str, Any] = result.structured_content or {}
    assert data["status"] == "completed"
    videos = [output for output in data["outputs"] if output["kind"] == "video"]
    assert videos and videos[0]["mime_type"] == "video/mp4" and videos[0]["path"]
    assert Path(videos[0]["path"]).read_bytes()[4:8] == b"ftyp"  # an MP4 on disk
    assert any(link.mime_type == "video/mp4" for link in links_of(result)), links_of(result)


async def test_a_local_start_image_is_uploaded_and_sent_as_the_first_frame(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    """A start image that is a local file is uploaded first; the family gets its URL in its own field."""
    picture = png_bytes()
    async with saving_client(simulator, clock, http, tmp_path) as client:
        (tmp_path / "in" / "photo.png").write_bytes(picture)
        result = await client.call_tool(
            "generate_video",
            {
                "prompt": "she turns and smiles",
                "start_image": str(tmp_path / "in" / "photo.png"),
                "wait_seconds": 0,
            },
        )

    assert not result.is_error, text_of(result)
    task = only_task(simulator)
    assert list(simulator.uploads.values()) == [picture]
    assert task.input["image_url"].startswith("http://piapi.test/_uploads/")


@pytest.mark.parametrize(
    ("model", "pair", "frames"),
    [
        ("kling", ("kling", "video_generation"), {"image_url": START}),
        ("hailuo", ("hailuo", "video_generation"), {"image_url": START}),
        ("luma", ("luma", "video_generation"), {"start_image": START, "model": "ray-v2"}),
        ("seedance", ("seedance", "seedance-2"), {"image_urls": [START], "mode": "first_last_frames"}),
        ("veo3", ("veo3", "veo3-video"), {"image_url": START}),
        ("wan", ("Wan", "wan26-img2video"), {"image": START}),
        ("hunyuan", ("Qubico/hunyuan", "img2video-concat"), {"image": START}),
        ("sora2", ("sora2", "sora2-video"), {"image_url": START}),
    ],
)
async def test_a_start_image_goes_to_each_family_s_own_first_frame_field_and_task(
    mcp_client: Client, simulator: PiAPISimulator, model: str, pair: tuple[str, str], frames: dict[str, Any]
) -> None:
    result = await mcp_client.call_tool(
        "generate_video",
        {"prompt": "the scene comes alive", "start_image": START, "model": model, "wait_seconds": 0},
    )

    assert not result.is_error, text_of(result)
    task = only_task(simulator)
    assert (task.model, task.task_type) == pair
    assert {key: task.input.get(key) for key in frames} == frames


@pytest.mark.parametrize(
    ("model", "pair", "frames"),
    [
        ("kling", ("kling", "video_generation"), {"image_url": START, "image_tail_url": END}),
        ("luma", ("luma", "video_generation"), {"start_image": START, "end_image": END}),
        ("seedance", ("seedance", "seedance-2"), {"image_urls": [START, END], "mode": "first_last_frames"}),
        ("veo3.1", ("veo3.1", "veo3.1-video"), {"image_url": START, "tail_image_url": END}),
    ],
)
async def test_an_end_image_maps_to_the_family_s_tail_image_field(
    mcp_client: Client, simulator: PiAPISimulator, model: str, pair: tuple[str, str], frames: dict[str, Any]
) -> None:
    result = await mcp_client.call_tool(
        "generate_video",
        {
            "prompt": "day turns to night",
            "start_image": START,
            "end_image": END,
            "model": model,
            "wait_seconds": 0,
        },
    )

    assert not result.is_error, text_of(result)
    task = only_task(simulator)
    assert (task.model, task.task_type) == pair
    assert {key: task.input.get(key) for key in frames} == frames


@pytest.mark.parametrize(
    ("arguments", "phrases"),
    [
        (
            {"model": "hailuo", "start_image": START, "end_image": END},
            ["hailuo takes no `end_image`", "kling"],
        ),
        ({"model": "hunyuan", "start_image": START, "end_image": END}, ["hunyuan takes no `end_image`"]),
        ({"end_image": END}, ["`end_image` needs a `start_image`"]),
        ({"model": "luma", "duration": 7}, ["`duration` with luma must be 5, 10 s (got 7)"]),
        ({"duration": 20}, ["`duration` with kling must be 3 to 15 s (got 20)"]),
        ({"model": "hunyuan", "duration": 5}, ["hunyuan takes no `duration`"]),
        ({"aspect_ratio": "4:3"}, ["`aspect_ratio` with kling must be 16:9, 9:16, 1:1 (got 4:3)"]),
        ({"model": "hailuo", "aspect_ratio": "16:9"}, ["`aspect_ratio` with hailuo must be left out"]),
        (
            {"model": "wan", "start_image": START, "aspect_ratio": "16:9"},
            ["wan takes no `aspect_ratio` with a"],
        ),
        ({"model": "hunyuan", "prompt": "x" * 1001}, ["`prompt` must be at most 1000 characters"]),
        ({"model": "midjourney"}, ["`model`"]),
    ],
    ids=[
        "end-image-hailuo",
        "end-image-hunyuan",
        "end-without-start",
        "luma-duration",
        "kling-duration",
        "no-duration",
        "kling-ratio",
        "hailuo-ratio",
        "wan-ratio-with-image",
        "hunyuan-prompt",
        "unknown-model",
    ],
)
async def test_an_unsupported_combination_is_refused_in_one_sentence_before_anything_is_sent(
    mcp_client: Client, simulator: PiAPISimulator, arguments: dict[str, Any], phrases: list[str]
) -> None:
    result = await mcp_client.call_tool("generate_video", {"prompt": "a cat", **arguments})

    message = text_of(result)
    assert result.is_error
    assert all(phrase in message for phrase in phrases), message
    assert message.count("\n") == 0 and message.endswith("generate_video again.")
    assert simulator.requests == [] and simulator.uploads == {}


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        ("kling", {"duration": 10, "aspect_ratio": "9:16"}),
        ("hailuo", {"duration": 10}),
        ("luma", {"duration": 10, "aspect_ratio": "4:3"}),
        ("seedance", {"duration": 8, "aspect_ratio": "21:9"}),
        ("veo3", {"duration": "8s", "aspect_ratio": "9:16"}),
        ("veo3.1", {"duration": "4s", "aspect_ratio": "16:9"}),
        ("wan", {"duration": 5, "aspect_ratio": "1:1"}),
        ("hunyuan", {"aspect_ratio": "4:3"}),
        ("sora2", {"duration": 10, "aspect_ratio": "16:9"}),
    ],
)
async def test_every_model_runs_to_a_video_with_duration_and_aspect_ratio_in_its_family_s_form(
    mcp_client: Client, simulator: PiAPISimulator, model: str, sent: dict[str, Any]
) -> None:
    """Each model choice completes in the simulator (which checks each family's contract)."""
    duration = sent.get("duration")
    given = {"aspect_ratio": sent.get("aspect_ratio")}
    if duration is not None:
        given["duration"] = int(str(duration).removesuffix("s"))
    arguments = {key: value for key, value in given.items() if value is not None}

    result = await mcp_client.call_tool(
        "generate_video", {"prompt": "waves at dusk", "model": model, **arguments}
    )

    assert not result.is_error, text_of(result)
    data: dict[str, Any] = result.structured_content or {}
    assert data["status"] == "completed", data
    assert "video" in {output["kind"] for output in data["outputs"]}
    assert {key: only_task(simulator).input.get(key) for key in sent} == sent


def test_every_model_choice_runs_active_video_specs_whose_frame_fields_take_media() -> None:
    from piapi_mcp.catalog import CATALOG

    for name, family in FAMILIES.items():
        for pair in (family.text, family.image):
            spec = CATALOG.find(*pair)
            assert spec is not None and spec.output == "video" and spec.status == "active", (name, pair)
        image_spec = CATALOG.find(*family.image)
        assert image_spec is not None
        # The frames go in media fields, so local files and earlier outputs are resolved like any image.
        media = image_spec.media_fields()
        assert family.start in media and (family.end is None or family.end in media), name


async def test_generate_video_publishes_its_arguments_model_in_a_small_schema_that_says_how_to_resume(
    mcp_client: Client,
) -> None:
    """The schema is VideoArguments' own plus the controls; description and schema stay small for hosts."""
    tools = {tool.name: tool for tool in (await mcp_client.list_tools()).tools}
    tool = tools["generate_video"]
    model_schema = lean_schema(VideoArguments.model_json_schema())

    assert list(tool.input_schema["properties"]) == [*model_schema["properties"], "wait_seconds", "force_new"]
    assert tool.input_schema["properties"]["model"]["default"] == "kling"
    assert tool.input_schema["required"] == ["prompt"]
    assert "get_task" in (tool.description or "") and "Paid" in (tool.description or "")
    assert len((tool.description or "").encode()) <= 250
    assert len(json.dumps(tool.input_schema, separators=(",", ":")).encode()) <= 1100
