"""The curated tools over the audio, 3D, face-swap and image-toolkit families, through the MCP client.

generate_music (Udio), text_to_speech (F5-TTS), generate_3d (Trellis, from a picture or a text),
swap_face (onto a picture or a video) and image_tools (remove_background | upscale | segment) each run
to completion against the simulator with their kind of output linked, saved and (images) previewed;
each routes its arguments to the right PiAPI (model, task_type) and input; a combination that does
not fit is refused in one sentence before anything is sent. One test runs three of them over stdio
against the simulator on loopback, as a user's server would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult, ImageContent, Tool

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.catalog import CATALOG
from piapi_mcp.catalog._generate_3d import TEXT_TO_3D
from piapi_mcp.loopback import serve_app_on_loopback
from piapi_mcp.media import sniff_output
from tests.helpers import links_of, png_bytes, saving_client, stdio_server, text_of

pytestmark = pytest.mark.anyio

PHOTO = "https://example.com/photo.png"
FACE = "https://example.com/face.jpg"
CLIP = "https://example.com/clip.mp4"
VOICE = "https://example.com/voice.wav"
#: This issue's curated tools here, and what each makes.
TOOLS = {
    "generate_music": "audio",
    "text_to_speech": "audio",
    "generate_3d": "model3d",
    "swap_face": "image",
    "image_tools": "image",
}
#: What one curated tool may cost in every tools/list: its input schema and its description, in bytes.
MAX_INPUT_SCHEMA = 800
MAX_DESCRIPTION = 220
#: Real seconds for the stdio scenario: the server's start-up dominates it.
SCENARIO_TIMEOUT = 60.0


def saved(result: CallToolResult, kind: str) -> Path:
    """The saved copy of the result's first output of ``kind`` (asserting there is one)."""
    outputs = [item for item in (result.structured_content or {})["outputs"] if item["kind"] == kind]
    assert outputs and outputs[0]["path"], f"no saved {kind}: {result.structured_content}"
    return Path(outputs[0]["path"])


def sniffed_mime(path: Path) -> str | None:
    found = sniff_output(path.read_bytes()[:64])
    return found.mime_type if found is not None else None


def completed(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    data: dict[str, Any] = result.structured_content or {}
    assert data["status"] == "completed", data
    return data


async def test_generate_music_composes_a_song_whose_audio_is_linked_and_saved_with_its_lyrics_as_text(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    """A description alone runs Udio in its generate mode; each song's audio comes back as audio."""
    async with saving_client(simulator, clock, http, tmp_path) as client:
        result = await client.call_tool("generate_music", {"prompt": "an upbeat jingle about coffee"})

    data = completed(result)
    (task,) = simulator.tasks.values()
    assert (task.model, task.task_type) == ("music-u", "generate_music")
    assert task.input == {
        "lyrics_type": "generate",
        "gpt_description_prompt": "an upbeat jingle about coffee",
    }
    kinds = [output["kind"] for output in data["outputs"]]
    assert kinds[:2] == ["audio", "audio"] and "text" in kinds
    assert any(link.mime_type == "audio/wav" and link.uri.startswith("http") for link in links_of(result))
    assert any(link.mime_type == "audio/wav" and link.uri.startswith("file://") for link in links_of(result))
    assert sniffed_mime(saved(result, "audio")) == "audio/wav"
    assert "Text output" in text_of(result)


@pytest.mark.parametrize(
    ("arguments", "sent"),
    [
        (
            {"prompt": "jazz, pop", "lyrics": "[Verse]\nCoffee in the morning"},
            {
                "lyrics_type": "user",
                "gpt_description_prompt": "jazz, pop",
                "lyrics": "[Verse]\nCoffee in the morning",
            },
        ),
        (
            {"prompt": "night breeze, piano", "instrumental": True},
            {"lyrics_type": "instrumental", "gpt_description_prompt": "night breeze, piano"},
        ),
    ],
    ids=["own-lyrics", "instrumental"],
)
async def test_generate_music_sends_udios_documented_mode_for_lyrics_and_for_an_instrumental(
    mcp_client: Client, simulator: PiAPISimulator, arguments: dict[str, Any], sent: dict[str, Any]
) -> None:
    """Own lyrics are lyrics_type user with the prompt as the style; instrumental is its own mode."""
    result = await mcp_client.call_tool("generate_music", {**arguments, "wait_seconds": 0})

    assert not result.is_error, text_of(result)
    (task,) = simulator.tasks.values()
    assert task.input == sent


async def test_text_to_speech_reads_a_text_aloud_as_a_saved_audio_file(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    async with saving_client(simulator, clock, http, tmp_path) as client:
        result = await client.call_tool("text_to_speech", {"gen_text": "Hello there.", "ref_audio": VOICE})

    data = completed(result)
    (task,) = simulator.tasks.values()
    assert (task.model, task.task_type) == ("Qubico/tts", "zero-shot")
    assert (task.input["gen_text"], task.input["ref_audio"]) == ("Hello there.", VOICE)
    assert [output["kind"] for output in data["outputs"]] == ["audio"]
    assert any(link.mime_type == "audio/wav" for link in links_of(result))
    assert sniffed_mime(saved(result, "audio")) == "audio/wav"
    assert not [block for block in result.content if isinstance(block, ImageContent)]


async def test_generate_3d_from_a_local_picture_uploads_it_and_returns_a_glb_linked_and_saved(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    """A picture runs Trellis image-to-3d; the GLB comes back as model/gltf-binary, saved."""
    picture = png_bytes()
    async with saving_client(simulator, clock, http, tmp_path) as client:
        (tmp_path / "in" / "chair.png").write_bytes(picture)
        result = await client.call_tool("generate_3d", {"image": str(tmp_path / "in" / "chair.png")})

    completed(result)
    (task,) = simulator.tasks.values()
    assert (task.model, task.task_type) == ("Qubico/trellis", "image-to-3d")
    assert list(simulator.uploads.values()) == [picture]
    assert task.input["image"].startswith("http://piapi.test/_uploads/") and "prompt" not in task.input
    assert any(
        link.mime_type == "model/gltf-binary" and link.uri.startswith("http") for link in links_of(result)
    )
    assert sniffed_mime(saved(result, "model3d")) == "model/gltf-binary"


async def test_generate_3d_from_a_text_runs_trellis_text_to_3d_or_says_in_one_sentence_it_is_not_here(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """The text path is Trellis text-to-3d, found in the catalog by name when called."""
    result = await mcp_client.call_tool("generate_3d", {"prompt": "a wooden chair"})

    if CATALOG.find(*TEXT_TO_3D) is None:
        message = text_of(result)
        assert result.is_error and "Qubico/trellis text-to-3d" in message and "nothing was sent" in message
        assert message.count("\n") == 0 and simulator.requests == []
    else:
        completed(result)
        (task,) = simulator.tasks.values()
        assert (task.model, task.task_type, task.input["prompt"]) == (*TEXT_TO_3D, "a wooden chair")
        assert any(link.mime_type == "model/gltf-binary" for link in links_of(result))


@pytest.mark.parametrize(
    ("arguments", "task_type", "sent"),
    [
        ({"operation": "remove_background"}, "background-remove", {}),
        ({"operation": "upscale", "scale": 4}, "upscale", {"scale": 4}),
        ({"operation": "segment", "prompt": "the dog"}, "segment", {"prompt": "the dog"}),
    ],
    ids=["remove-background", "upscale", "segment"],
)
async def test_image_tools_runs_each_operation_as_its_toolkit_task_with_a_previewed_saved_image(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    tmp_path: Path,
    arguments: dict[str, Any],
    task_type: str,
    sent: dict[str, Any],
) -> None:
    async with saving_client(simulator, clock, http, tmp_path) as client:
        result = await client.call_tool("image_tools", {**arguments, "image": PHOTO})

    data = completed(result)
    (task,) = simulator.tasks.values()
    assert (task.model, task.task_type) == ("Qubico/image-toolkit", task_type)
    assert task.input == {"image": PHOTO, **sent}
    assert [output["kind"] for output in data["outputs"]] == ["image"]
    assert [block for block in result.content if isinstance(block, ImageContent)], "no preview"
    assert any(link.mime_type == "image/png" and link.uri.startswith("http") for link in links_of(result))
    assert sniffed_mime(saved(result, "image")) == "image/png"


@pytest.mark.parametrize(
    ("target", "model", "sent", "kind", "mime"),
    [
        ({"target_image": PHOTO}, "Qubico/image-toolkit", {"target_image": PHOTO}, "image", "image/png"),
        ({"target_video": CLIP}, "Qubico/video-toolkit", {"target_video": CLIP}, "video", "video/mp4"),
    ],
    ids=["onto-a-picture", "onto-a-video"],
)
async def test_swap_face_onto_a_picture_or_a_video_runs_that_toolkits_face_swap(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    tmp_path: Path,
    target: dict[str, str],
    model: str,
    sent: dict[str, str],
    kind: str,
    mime: str,
) -> None:
    """The argument that names the target says its kind: target_image or target_video."""
    async with saving_client(simulator, clock, http, tmp_path) as client:
        result = await client.call_tool("swap_face", {"face": FACE, **target})

    data = completed(result)
    (task,) = simulator.tasks.values()
    assert (task.model, task.task_type) == (model, "face-swap")
    assert task.input == {"swap_image": FACE, **sent}
    assert [output["kind"] for output in data["outputs"]] == [kind]
    assert any(link.mime_type == mime and link.uri.startswith("http") for link in links_of(result))
    assert sniffed_mime(saved(result, kind)) == mime


async def test_swap_face_takes_a_video_output_of_an_earlier_task_as_its_target(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """piapi://tasks/{id} as target_video resolves to that task's video (not its cover image)."""
    made = await mcp_client.call_tool(
        "run_task", {"model": "hailuo", "task_type": "video_generation", "input": {"prompt": "a boat"}}
    )
    video_id = completed(made)["task_id"]
    (video_url,) = [item["url"] for item in completed(made)["outputs"] if item["kind"] == "video"]

    result = await mcp_client.call_tool(
        "swap_face", {"face": FACE, "target_video": f"piapi://tasks/{video_id}"}
    )

    completed(result)
    (swap,) = [task for task in simulator.tasks.values() if task.task_type == "face-swap"]
    assert swap.input["target_video"] == video_url


@pytest.mark.parametrize(
    ("tool", "arguments", "phrase"),
    [
        (
            "generate_music",
            {"prompt": "a song", "lyrics": "la la", "instrumental": True},
            "do not go together",
        ),
        ("generate_3d", {}, "exactly one of `image` and `prompt`"),
        ("generate_3d", {"image": PHOTO, "prompt": "a chair"}, "exactly one of `image` and `prompt`"),
        ("swap_face", {"face": FACE}, "exactly one of `target_image` and `target_video`"),
        ("swap_face", {"face": FACE, "target_image": PHOTO, "target_video": CLIP}, "exactly one of"),
        ("image_tools", {"operation": "segment", "image": PHOTO}, "`prompt` is required to segment"),
        ("image_tools", {"operation": "upscale", "image": PHOTO, "prompt": "x"}, "applies only to operation"),
        (
            "image_tools",
            {"operation": "remove_background", "image": PHOTO, "scale": 4},
            "`scale` applies only",
        ),
        ("image_tools", {"operation": "blur", "image": PHOTO}, "`operation`"),
        ("text_to_speech", {"gen_text": "Hello."}, "`ref_audio` is required"),
    ],
    ids=[
        "lyrics-and-instrumental",
        "3d-from-nothing",
        "3d-from-both",
        "swap-without-target",
        "swap-onto-both",
        "segment-without-prompt",
        "prompt-with-upscale",
        "scale-with-remove-background",
        "unknown-operation",
        "speech-without-voice",
    ],
)
async def test_a_combination_that_does_not_fit_is_refused_in_one_sentence_before_anything_is_sent(
    mcp_client: Client, simulator: PiAPISimulator, tool: str, arguments: dict[str, Any], phrase: str
) -> None:
    result = await mcp_client.call_tool(tool, arguments)

    message = text_of(result)
    assert result.is_error
    assert phrase in message, message
    assert message.count("\n") == 0 and message.endswith(f"{tool} again.")
    assert simulator.requests == []


async def test_each_tool_is_short_in_tools_list_and_tells_its_cost_class_and_duration(
    mcp_client: Client,
) -> None:
    """Every byte of tools/list is in the model's context on every turn: schemas and descriptions stay small."""
    tools: dict[str, Tool] = {tool.name: tool for tool in (await mcp_client.list_tools()).tools}

    for name in TOOLS:
        tool = tools[name]
        schema = json.dumps(tool.input_schema, separators=(",", ":"))
        description = tool.description or ""
        assert len(schema.encode()) <= MAX_INPUT_SCHEMA, (name, len(schema))
        assert len(description.encode()) <= MAX_DESCRIPTION, (name, len(description))
        assert re.search(r"Paid\b.*\babout \d+(-\d+)? (s|min)\b", description), (name, description)


async def test_generate_music_generate_3d_and_image_tools_complete_over_stdio_against_a_piapi_speaking_server(
    simulator: PiAPISimulator, clock: ManualClock, tmp_path: Path
) -> None:
    """A real ``python -m piapi_mcp`` pointed at the simulator by PIAPI_BASE_URL: audio, GLB, previewed image."""
    outputs = tmp_path / "outputs"
    calls = {
        "generate_music": {"prompt": "a 30-second jingle about coffee"},
        "generate_3d": {"image": PHOTO},
        "image_tools": {"operation": "remove_background", "image": PHOTO},
    }
    results: dict[str, CallToolResult] = {}
    async with serve_app_on_loopback(simulator.app) as sim_url:
        params = stdio_server(sim_url, outputs)
        with anyio.fail_after(SCENARIO_TIMEOUT):
            async with Client(params) as session:
                for tool, arguments in calls.items():
                    started = await session.call_tool(tool, {**arguments, "wait_seconds": 0})
                    assert not started.is_error, text_of(started)
                    clock.advance(600)
                    task_id = (started.structured_content or {})["task_id"]
                    results[tool] = await session.call_tool("get_task", {"task_id": task_id})

    for tool, kind, mime in (
        ("generate_music", "audio", "audio/wav"),
        ("generate_3d", "model3d", "model/gltf-binary"),
        ("image_tools", "image", "image/png"),
    ):
        result = results[tool]
        completed(result)
        assert any(link.mime_type == mime and link.uri.startswith(sim_url) for link in links_of(result)), tool
        path = saved(result, kind)
        assert path.parent == outputs and sniffed_mime(path) == mime, tool
    assert [block for block in results["image_tools"].content if isinstance(block, ImageContent)], (
        "no preview"
    )
