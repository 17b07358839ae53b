"""The simulator judges every create through the catalog and makes real files of every output kind.

Also: the package a wheel ships holds its subpackages and ``py.typed``, and the sandbox's task
length overrides every spec's typical duration.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import struct
import subprocess
import sys
import wave
import zipfile
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image

from piapi_mcp import ManualClock, PiAPIClient, PiAPISimulator
from piapi_mcp.catalog import CATALOG
from piapi_mcp.cli import _sandbox_priors
from piapi_mcp.config import Config
from piapi_mcp.errors import BadRequestError
from tests.conftest import API_KEY, SIM_BASE_URL

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
KONTEXT = ("Qubico/flux1-dev-advanced", "kontext")
HAILUO = ("hailuo", "video_generation")
TTS = ("Qubico/tts", "zero-shot")
CAPTION = ("Qubico/joycaption", "joycaption-beta-one")
TRELLIS = ("Qubico/trellis", "image-to-3d")
IMAGE = "https://example.com/photo.png"


def client_for(http: httpx2.AsyncClient, clock: ManualClock) -> PiAPIClient:
    return PiAPIClient(http, api_key=API_KEY, base_url=SIM_BASE_URL, clock=clock, jitter=lambda: 0.5)


async def create(http: httpx2.AsyncClient, pair: tuple[str, str], task_input: Any) -> httpx2.Response:
    body = {"model": pair[0], "task_type": pair[1], "input": task_input}
    return await http.post("/api/v1/task", json=body, headers={"X-API-Key": API_KEY})


async def completed_output(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    pair: tuple[str, str],
    task_input: Any,
) -> dict[str, Any]:
    answer = await create(http, pair, task_input)
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["data"]["task_id"]
    clock.advance(simulator.controls.queue_seconds + simulator.controls.duration)
    task = await client_for(http, clock).get_task(task_id)
    assert task.status == "completed" and task.output is not None
    return task.output


async def test_a_pair_the_catalog_does_not_know_is_refused_with_400_and_nothing_is_created(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    answer = await create(http, ("Qubico/flux1-dev-advanced", "txt2video"), {"prompt": "a cat"})

    assert answer.status_code == 400
    assert answer.json() == {
        "code": 400,
        "data": None,
        "message": "invalid request: unsupported model/task_type 'Qubico/flux1-dev-advanced'/'txt2video'",
    }
    with pytest.raises(BadRequestError) as refused:
        await client_for(http, clock).create_task("nobody", "txt2img", {"prompt": "a cat"})
    assert refused.value.status_code == 400 and "unsupported model/task_type" in str(
        refused.value.upstream_message
    )
    assert simulator.tasks == {}


@pytest.mark.parametrize(
    ("pair", "task_input", "said"),
    [
        pytest.param(
            KONTEXT,
            {"prompt": "x", "image": IMAGE, "steps": 41},
            "input.steps: Input should be less than or equal to 40",
            id="kontext-steps",
        ),
        pytest.param(
            KONTEXT,
            {"prompt": "x", "image": IMAGE, "strength": 2},
            "input.strength: Extra inputs are not permitted",
            id="kontext-extra",
        ),
        pytest.param(KONTEXT, {"image": IMAGE}, "input.prompt: Field required", id="kontext-prompt"),
        pytest.param(
            TTS, {"ref_audio": "https://example.com/v.wav"}, "input.gen_text: Field required", id="tts-text"
        ),
        pytest.param(
            TTS,
            {"gen_text": "x" * 10_001, "ref_audio": "https://example.com/v.wav"},
            "input.gen_text: String should have at most 10000 characters",
            id="tts-long",
        ),
        pytest.param(
            CAPTION, {"prompt_style": "Descriptive"}, "input.image: Field required", id="caption-image"
        ),
        pytest.param(
            HAILUO,
            {"prompt": "x" * 2001, "model": "v2.3"},
            "input.prompt: String should have at most 2000 characters",
            id="hailuo-prompt",
        ),
        pytest.param(
            HAILUO,
            {"prompt": "x", "model": "v2.3", "duration": 7},
            "input.duration: Input should be 6 or 10",
            id="hailuo-duration",
        ),
    ],
)
async def test_an_input_its_spec_refuses_gets_400_naming_the_field(
    simulator: PiAPISimulator,
    http: httpx2.AsyncClient,
    pair: tuple[str, str],
    task_input: dict[str, Any],
    said: str,
) -> None:
    answer = await create(http, pair, task_input)

    assert answer.status_code == 400
    assert answer.json()["message"] == f"invalid request: {said}"
    assert simulator.tasks == {}


@pytest.mark.parametrize(
    ("pair", "task_input", "said"),
    [
        pytest.param(HAILUO, {"prompt": "x"}, "input.model is required", id="hailuo-no-sub-model"),
        pytest.param(
            HAILUO,
            {"prompt": "x", "model": "t2v-01", "image_url": IMAGE},
            "input.image_url is not allowed with t2v-01",
            id="hailuo-t2v-image",
        ),
        pytest.param(
            HAILUO,
            {"prompt": "x", "model": "i2v-01"},
            "input.image_url is required with i2v-01",
            id="hailuo-i2v-no-image",
        ),
        pytest.param(
            HAILUO,
            {"model": "s2v-01", "image_url": IMAGE},
            "input.prompt is required",
            id="hailuo-s2v-no-prompt",
        ),
        pytest.param(
            HAILUO,
            {"prompt": "x", "model": "v2.3", "duration": 10, "resolution": 1080},
            "10 s videos are not available at 1080p",
            id="hailuo-1080-10s",
        ),
        pytest.param(TRELLIS, {"seed": 3}, "input.image or input.images is required", id="trellis-no-image"),
    ],
)
async def test_documented_limits_beyond_the_input_model_are_enforced_by_the_simulator(
    simulator: PiAPISimulator,
    http: httpx2.AsyncClient,
    pair: tuple[str, str],
    task_input: dict[str, Any],
    said: str,
) -> None:
    answer = await create(http, pair, task_input)

    assert answer.status_code == 400
    assert answer.json()["message"] == f"invalid request: {said}"
    assert simulator.tasks == {}


async def test_the_echoed_input_carries_the_spec_defaults_and_no_other_family_s(
    simulator: PiAPISimulator, http: httpx2.AsyncClient
) -> None:
    kontext = await create(http, KONTEXT, {"prompt": "make it blue", "image": IMAGE})
    speech = await create(http, TTS, {"gen_text": "Hello", "ref_audio": "https://example.com/v.wav"})
    hailuo = await create(http, HAILUO, {"prompt": "a boat", "model": "v2.3", "camera": "pan"})

    # Kontext's size has no fixed default since issue 10 (the server fills it from the picture).
    assert kontext.json()["data"]["input"] == {
        "image": IMAGE,
        "prompt": "make it blue",
        "seed": -1,
        "steps": 28,
    }
    assert speech.json()["data"]["input"] == {"gen_text": "Hello", "ref_audio": "https://example.com/v.wav"}
    # Where the docs are thin the spec lets extra keys through, as PiAPI would.
    assert hailuo.json()["data"]["input"] == {
        "camera": "pan",
        "expand_prompt": False,
        "model": "v2.3",
        "prompt": "a boat",
    }


async def test_a_3d_task_serves_a_valid_glb_its_turntable_video_and_its_cut_out_picture(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    output = await completed_output(simulator, clock, http, TRELLIS, {"image": IMAGE})

    model = await http.get(output["model_file"])
    video = await http.get(output["combined_video"])
    picture = await http.get(output["no_background_image"])

    assert [
        model.headers["content-type"],
        video.headers["content-type"],
        picture.headers["content-type"],
    ] == [
        "model/gltf-binary",
        "video/mp4",
        "image/png",
    ]
    magic, version, length = struct.unpack_from("<4sII", model.content)
    assert (magic, version, length) == (b"glTF", 2, len(model.content))
    json_length, json_type = struct.unpack_from("<I4s", model.content, 12)
    gltf = json.loads(model.content[20 : 20 + json_length])
    bin_length, bin_type = struct.unpack_from("<I4s", model.content, 20 + json_length)
    positions = struct.unpack_from("<9f", model.content, 28 + json_length)
    assert (json_type, bin_type, gltf["asset"]["version"]) == (b"JSON", b"BIN\0", "2.0")
    assert bin_length == gltf["buffers"][0]["byteLength"] == 36 and gltf["accessors"][0]["count"] == 3
    assert (
        len(set(zip(positions[0::3], positions[1::3], positions[2::3], strict=True))) == 3
    )  # a real triangle
    boxes = top_level_boxes(video.content)
    assert boxes[0] == b"ftyp" and {b"moov", b"mdat"} <= set(boxes)
    with Image.open(io.BytesIO(picture.content)) as image:
        assert image.format == "PNG" and image.size == (256, 256)


async def test_a_speech_task_serves_a_wav_that_plays(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    output = await completed_output(
        simulator, clock, http, TTS, {"gen_text": "Hello there", "ref_audio": "https://example.com/v.wav"}
    )

    audio = await http.get(output["audio_url"])

    assert audio.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(audio.content)) as sound:
        assert (sound.getnchannels(), sound.getsampwidth()) == (1, 2)
        assert sound.getnframes() / sound.getframerate() >= 0.2
        assert any(sound.readframes(sound.getnframes()))


async def test_a_caption_task_answers_with_text_about_its_picture_and_no_file(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    output = await completed_output(
        simulator, clock, http, CAPTION, {"image": IMAGE, "prompt_style": "Descriptive"}
    )

    assert list(output) == ["text"]
    assert IMAGE in output["text"] and "caption" in output["text"]


async def test_a_video_task_has_its_video_its_download_and_a_cover_picture(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    output = await completed_output(simulator, clock, http, HAILUO, {"prompt": "a boat", "model": "v2.3"})

    types = {
        key: (await http.get(output[key])).headers["content-type"]
        for key in ("video_url", "download_url", "cover_url")
    }

    assert types == {"video_url": "video/mp4", "download_url": "video/mp4", "cover_url": "image/png"}
    assert len({output["video_url"], output["download_url"], output["cover_url"]}) == 3


async def test_output_files_are_not_served_before_the_task_completes_nor_after_outputs_are_pruned(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    output = await completed_output(simulator, clock, http, TRELLIS, {"image": IMAGE})
    answer = await create(http, TRELLIS, {"image": IMAGE, "seed": 1})
    unfinished = f"{SIM_BASE_URL}/temp/{answer.json()['data']['task_id']}.png"

    assert (await http.get(unfinished)).status_code == 404
    simulator.controls.serve_outputs = False
    assert (await http.get(output["model_file"])).status_code == 404


async def test_a_fail_marker_in_any_text_fails_that_task_in_words_of_its_kind(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    answer = await create(
        http, TTS, {"gen_text": "say [FAIL] please", "ref_audio": "https://example.com/v.wav"}
    )
    clock.advance(simulator.controls.queue_seconds + simulator.controls.duration)

    task = await client_for(http, clock).get_task(answer.json()["data"]["task_id"])

    assert task.status == "failed" and task.output is None
    assert task.error is not None and task.error.message == "The audio generation failed (simulated)."


async def test_the_simulated_task_length_applies_to_every_spec_whatever_its_typical_duration(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    simulator.controls.queue_seconds, simulator.controls.duration = 1.0, 3.0
    client = client_for(http, clock)
    answer = await create(http, HAILUO, {"prompt": "a boat", "model": "v2.3"})
    task_id = answer.json()["data"]["task_id"]

    clock.advance(3.9)
    assert (await client.get_task(task_id)).status == "processing"
    clock.advance(0.1)
    assert (await client.get_task(task_id)).status == "completed"
    assert CATALOG.find(*HAILUO) is not None and CATALOG.find(*HAILUO).typical_seconds > 60  # type: ignore[union-attr]


def test_the_sandbox_scales_every_specs_typical_duration_so_an_edit_takes_the_sandbox_duration() -> None:
    """PIAPI_SANDBOX_DURATION is a Kontext edit's length; every other entry keeps its proportion."""
    args = argparse.Namespace(sandbox=True)
    config = Config.load(args, {"PIAPI_SANDBOX_DURATION": "4"})
    kontext = CATALOG.find("Qubico/flux1-dev-advanced", "kontext")
    assert kontext is not None

    priors = _sandbox_priors(config)

    assert priors[kontext.key] == pytest.approx(1.0 + 4.0)
    for spec in CATALOG.all():
        expected = 1.0 + max(0.1, spec.typical_seconds * 4.0 / kontext.typical_seconds)
        assert priors[spec.key] == pytest.approx(expected), spec.key
    video = CATALOG.find(*HAILUO)
    assert video is not None and priors[video.key] > priors[kontext.key]
    assert {spec.output for spec in CATALOG.all()} >= {"image", "video", "audio", "model3d", "text"}


async def test_with_a_duration_scale_each_task_runs_its_specs_typical_time_scaled(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """A video runs longer than an edit in the sandbox, in the same proportion as on PiAPI."""
    simulator.controls.queue_seconds, simulator.controls.duration_scale = 0.0, 0.1
    client = client_for(http, clock)
    spec = CATALOG.find(*HAILUO)
    assert spec is not None
    answer = await create(http, HAILUO, {"prompt": "a boat", "model": "v2.3"})
    task_id = answer.json()["data"]["task_id"]

    clock.advance(spec.typical_seconds * 0.1 - 0.5)
    assert (await client.get_task(task_id)).status == "processing"
    clock.advance(0.6)
    assert (await client.get_task(task_id)).status == "completed"


@pytest.mark.timeout(120)
def test_a_built_wheel_holds_the_catalog_the_simulator_its_data_and_py_typed(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "piapi_mcp", source / "piapi_mcp", ignore=shutil.ignore_patterns("__pycache__"))

    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )

    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("piapi_mcp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(path.relative_to(ROOT)).replace("\\", "/")
        for folder in ("catalog", "simulator")
        for path in (ROOT / "piapi_mcp" / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected >= {
        "piapi_mcp/catalog/__init__.py",
        "piapi_mcp/simulator/app.py",
        "piapi_mcp/simulator/data/tiny.mp4",
    }
    assert expected | {"piapi_mcp/py.typed", "piapi_mcp/__init__.py", "piapi_mcp/server.py"} <= names


def top_level_boxes(data: bytes) -> list[bytes]:
    """The types of an ISO-BMFF file's top-level boxes, checking their sizes add up."""
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        assert size >= 8 and offset + size <= len(data)
        boxes.append(kind)
        offset += size
    return boxes
