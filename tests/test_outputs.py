"""Outputs of every kind: the generic walk, the per-family parsers, saving, links, previews and inputs.

What a task made is read from PiAPI's ``output`` (never its ``input``): URLs anywhere, classified by
key then extension, and text outputs as text. Recorded samples of PiAPI's documented outputs
(``tests/samples/``, each naming its source) drive the parsers; the MCP tests play other kinds of
outputs through the simulator's ``tamper`` (rewriting a task's answer) and ``files`` (serving bytes).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import BlobResourceContents, ImageContent, ResourceLink, TextContent

from piapi_mcp import ManualClock, PiAPIClient, PiAPISimulator, TaskResult, catalog
from piapi_mcp.catalog import Catalog, TaskSpec, kling, midjourney, udio
from piapi_mcp.catalog.flux import KONTEXT
from piapi_mcp.media import Confinement, ImageInputError, ImageResolver, OutputSaver
from piapi_mcp.models import MAX_LISTED_OUTPUTS, MAX_TEXT_CHARS, OutputRef, parse_task, walk_outputs
from piapi_mcp.simulator import HostedFile
from tests.conftest import API_KEY, SIM_BASE_URL, make_server

pytestmark = pytest.mark.anyio

SAMPLES = Path(__file__).resolve().parent / "samples"
EDIT = {"prompt": "make the sky purple", "image": "https://example.com/in.png"}

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 80
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 80
MOV = b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  " + b"\x00" * 80
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x44\xac\x00\x00" + b"\x00" * 64
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x00" + b"\x00" * 80
GLB = b"glTF\x02\x00\x00\x00\x64\x00\x00\x00" + b"\x00" * 88


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
    assert data["source"]  # every sample says where its shape comes from
    return data


def pairs(outputs: list[OutputRef]) -> list[tuple[str, str | None]]:
    return [(output.kind, output.url or output.text) for output in outputs]


# --- the generic walk --------------------------------------------------------------------------

U = "https://cdn.test/o"
WALKED: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("image_url", {"image_url": f"{U}/a.png"}, [("image", f"{U}/a.png")]),
    (
        "image_urls",
        {"image_urls": [f"{U}/1.png", f"{U}/2.png"]},
        [("image", f"{U}/1.png"), ("image", f"{U}/2.png")],
    ),
    ("temporary_image_urls", {"temporary_image_urls": [f"{U}/t"]}, [("image", f"{U}/t")]),
    ("video_url without extension", {"video_url": f"{U}/v"}, [("video", f"{U}/v")]),
    ("video string", {"video": f"{U}/v.mp4"}, [("video", f"{U}/v.mp4")]),
    ("video object", {"video": {"url": f"{U}/v"}}, [("video", f"{U}/v")]),
    ("video_raw object", {"video_raw": {"url": f"{U}/raw"}}, [("video", f"{U}/raw")]),
    ("download_url by extension", {"download_url": f"{U}/d.mov?sig=1"}, [("video", f"{U}/d.mov?sig=1")]),
    ("audio_url", {"audio_url": f"{U}/a"}, [("audio", f"{U}/a")]),
    ("songs[].song_path", {"songs": [{"song_path": f"{U}/s"}]}, [("audio", f"{U}/s")]),
    ("clips.<id>.audio_url", {"clips": {"c1": {"audio_url": f"{U}/c"}}}, [("audio", f"{U}/c")]),
    ("model_file", {"model_file": f"{U}/m"}, [("model3d", f"{U}/m")]),
    ("combined_video", {"combined_video": f"{U}/cv"}, [("video", f"{U}/cv")]),
    ("thumbnail object", {"thumbnail": {"url": f"{U}/th"}}, [("image", f"{U}/th")]),
    ("cover_url", {"cover_url": f"{U}/cover"}, [("image", f"{U}/cover")]),
    ("last_frame object", {"last_frame": {"url": f"{U}/lf"}}, [("image", f"{U}/lf")]),
    (
        "works[] video and cover",
        {"works": [{"video": {"resource": f"{U}/w.mp4"}, "cover": {"resource": f"{U}/w.jpg"}}]},
        [("video", f"{U}/w.mp4"), ("image", f"{U}/w.jpg")],
    ),
    ("an unknown key, by extension", {"result": f"{U}/chair.obj"}, [("model3d", f"{U}/chair.obj")]),
    ("an unknown key and extension", {"result": f"{U}/report"}, [("file", f"{U}/report")]),
    ("the key beats the extension", {"image_url": f"{U}/x.mp4"}, [("image", f"{U}/x.mp4")]),
]


@pytest.mark.parametrize(
    ("output", "expected"), [(o, e) for _, o, e in WALKED], ids=[i for i, _, _ in WALKED]
)
def test_the_walk_finds_every_documented_output_field_and_classifies_it_by_key_then_extension(
    output: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    """Field names from piapi-catalog.md §7 item 5, wherever they sit in the output."""
    assert pairs(walk_outputs(output)) == expected
    assert pairs(walk_outputs({"deeper": {"still": [output]}})) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Qubico__joycaption__joycaption-beta-one.json", 'the word "PIPI" made entirely from colorful'),
        ("midjourney__describe.json", "a red lighthouse on a cliff at dusk"),
    ],
)
def test_captions_and_descriptions_come_back_as_text_outputs(name: str, expected: str) -> None:
    """Joycaption's ``text`` and Midjourney describe's ``description`` are outputs, not "no media found"."""
    (output,) = parse_task(sample(name)["data"]).outputs
    assert output.kind == "text" and output.url is None and expected in (output.text or "")
    assert output.mime_type == "text/plain"


def test_the_walk_reads_a_3d_task_as_a_model_a_video_and_an_image() -> None:
    outputs = parse_task(sample("Qubico__trellis__image-to-3d.json")["data"]).outputs
    assert [(o.kind, o.mime_type) for o in outputs] == [
        ("image", "image/png"),
        ("video", "video/mp4"),
        ("model3d", "model/gltf-binary"),
    ]


def test_intermediate_inline_empty_repeated_and_non_http_values_are_not_outputs() -> None:
    output = {
        "intermediate_image_urls": [f"{U}/progress.png"],
        "image_base64": "iVBORw0KGgo=",
        "data": [{"b64_json": f"{U}/inline.png"}],
        "video_url": "",
        "video": "   ",
        "image_urls": [f"{U}/1.png", f"{U}/1.png", "javascript:alert(1)", "file:///etc/passwd", 7, None],
        "image_url": f"{U}/1.png",
        "text": "   ",
    }
    assert pairs(walk_outputs(output)) == [("image", f"{U}/1.png")]


def test_urls_in_the_tasks_input_are_never_taken_for_outputs() -> None:
    data = {
        "task_id": "t-1",
        "status": "completed",
        "input": {"image_url": f"{U}/input.png", "video_url": f"{U}/input.mp4"},
        "output": {"video_url": f"{U}/out.mp4"},
    }
    assert pairs(parse_task(data).outputs) == [("video", f"{U}/out.mp4")]


def test_hostile_output_shapes_are_walked_within_bounds_without_crashing() -> None:
    """A self-referencing dict, a 100,000-deep nesting, a million-item list, huge keys and texts."""
    looped: dict[str, Any] = {"image_url": f"{U}/loop.png"}
    looped["again"] = looped
    deep: dict[str, Any] = {"video_url": f"{U}/deep.mp4"}
    for _ in range(100_000):
        deep = {"x": deep}
    many = {"image_urls": [f"{U}/{n}.png" for n in range(1_000_000)]}
    odd = {1: f"{U}/int-key.png", ("t",): "x", "text": "a\x00b\x1b[31mc" + "z" * (MAX_TEXT_CHARS * 3)}
    long_key = {"video" + "k" * 1_000_000: [{"x": [f"{U}/{n}"]} for n in range(5_000)]}

    started = time.perf_counter()
    assert pairs(walk_outputs(looped)) == [("image", f"{U}/loop.png")]
    assert walk_outputs(deep) == []  # past the depth bound: not reached, not a crash
    listed = parse_task({"task_id": "t-1", "status": "completed", "output": many}).outputs
    (text,) = walk_outputs(odd)
    under_long_key = walk_outputs(long_key)
    assert time.perf_counter() - started < 30  # generous: bounded work, not a timing claim

    assert len(listed) == MAX_LISTED_OUTPUTS
    assert len(under_long_key) == MAX_LISTED_OUTPUTS and {o.kind for o in under_long_key} == {"file"}
    assert text.text is not None and text.text.startswith("ab[31mc") and len(text.text) == MAX_TEXT_CHARS


# --- the per-family parsers, on recorded samples --------------------------------------------------


def test_midjourney_keeps_the_four_splits_then_the_grid_as_one_more_image() -> None:
    output = sample("midjourney__imagine.json")["data"]["output"]

    parsed = midjourney.parse_outputs(output)

    assert pairs(parsed) == [
        *[("image", f"https://img.theapi.app/mj/0b3f6c2e-{n}.png") for n in range(1, 5)],
        ("image", "https://img.theapi.app/mj/0b3f6c2e-grid.png"),
    ]
    # The walk would list ten images (splits twice, grid twice): why the parser exists.
    assert len(walk_outputs(output)) == 10


def test_midjourney_falls_back_to_its_cdn_splits_and_reads_describe_as_text() -> None:
    cdn_only = {"temporary_image_urls": [f"{U}/{n}.png" for n in range(4)], "image_url": f"{U}/grid.png"}
    assert [url for _, url in pairs(midjourney.parse_outputs(cdn_only))] == [
        *[f"{U}/{n}.png" for n in range(4)],
        f"{U}/grid.png",
    ]
    described = midjourney.parse_outputs(sample("midjourney__describe.json")["data"]["output"])
    assert [output.kind for output in described] == ["text"]


def test_kling_prefers_the_watermark_free_video_and_gives_the_cover_as_an_image() -> None:
    output = sample("kling__video_generation.json")["data"]["output"]

    parsed = kling.parse_outputs(output)

    assert pairs(parsed) == [
        ("video", "https://storage.goapi.ai/kling/7c1e/video-nowm.mp4"),
        ("image", "https://s15-kling.klingai.com/kimg/7c1e/cover.jpg?x-kcdn-sign=abc"),
    ]
    assert parsed[0].mime_type == "video/mp4" and parsed[1].mime_type == "image/jpeg"
    # The walk would also list the watermarked copy on Kling's CDN.
    assert "https://v15-kling.klingai.com/bs2/7c1e/video.mp4?x-kcdn-sign=def" in [
        o.url for o in walk_outputs(output)
    ]


def test_kling_3_and_omni_answer_with_one_video() -> None:
    output = sample("kling__omni_video_generation.json")["data"]["output"]
    assert pairs(kling.parse_outputs(output)) == [("video", "https://storage.theapi.app/videos/5d2a7f.mp4")]
    assert pairs(kling.parse_outputs({"video": {"url": f"{U}/v"}, "works": None})) == [("video", f"{U}/v")]
    assert kling.parse_outputs({"video": ""}) == []  # the pending skeleton: nothing yet


def test_udio_gives_each_songs_audio_then_covers_then_the_lyrics_once() -> None:
    output = sample("music-u__generate_music.json")["data"]["output"]

    parsed = udio.parse_outputs(output)

    assert [(o.kind, o.url) for o in parsed if o.url] == [
        ("audio", "https://storage.googleapis.com/udio-songs/song-a.mp3"),
        ("audio", "https://storage.googleapis.com/udio-songs/song-b.mp3"),
        ("image", "https://storage.googleapis.com/udio-artwork/song-a.jpg"),
        ("image", "https://storage.googleapis.com/udio-artwork/song-b.jpg"),
    ]
    texts = [o.text for o in parse_task({**sample("music-u__generate_music.json")["data"]}).outputs if o.text]
    assert [o.kind for o in parsed][:4] == ["audio", "audio", "image", "image"]
    assert all("Coffee wakes me up" in (o.text or "") for o in parsed if o.kind == "text")
    assert len(texts) == 1  # both songs carry the same lyrics: listed once


@pytest.mark.parametrize("parser", [midjourney.parse_outputs, kling.parse_outputs, udio.parse_outputs])
@pytest.mark.parametrize(
    "output",
    [
        {},
        {"works": "x", "songs": 3, "image_urls": {"a": 1}},
        {"works": [None, 1, {"video": 5}], "songs": [[]]},
    ],
)
def test_a_parser_meeting_an_unexpected_shape_falls_back_to_the_walk(
    parser: Callable[[dict[str, Any]], list[OutputRef]], output: dict[str, Any]
) -> None:
    assert parser(output) == walk_outputs(output)


# --- through MCP ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def instant_tasks(simulator: PiAPISimulator) -> None:
    """Tasks are completed in the create's own answer, so the result is rendered at once."""
    simulator.controls.queue_seconds = 0
    simulator.controls.duration = 0


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    return tmp_path / "outputs"


@pytest.fixture
async def session(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, outputs: Path
) -> AsyncIterator[Client]:
    server = make_server(simulator, clock, http, outputs=OutputSaver(http, outputs), preview=True)
    async with Client(server) as client:
        yield client


def host(simulator: PiAPISimulator, name: str, body: bytes) -> str:
    simulator.controls.files[name] = HostedFile(body=body)
    return f"{SIM_BASE_URL}/files/{name}"


def answer_with(simulator: PiAPISimulator, output: dict[str, Any], **fields: Any) -> None:
    """Every completed task's answer carries ``output`` (and ``fields``, e.g. another model)."""

    def tamper(data: dict[str, Any]) -> dict[str, Any]:
        if str(data.get("status")).lower() == "completed":
            return {**data, **fields, "output": output}
        return data

    simulator.controls.tamper = tamper


def result_of(result: Any) -> TaskResult:
    return TaskResult.model_validate(result.structured_content)


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def links(result: Any) -> list[ResourceLink]:
    return [block for block in result.content if isinstance(block, ResourceLink)]


class Recording(httpx2.AsyncBaseTransport):
    """Passes requests to the simulator and remembers the path of each."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def recording(simulator: PiAPISimulator) -> Recording:
    return Recording(httpx2.ASGITransport(simulator.app))


@pytest.fixture
async def http(recording: Recording) -> AsyncIterator[httpx2.AsyncClient]:
    """The server's HTTP client, its every request recorded."""
    async with httpx2.AsyncClient(transport=recording, base_url=SIM_BASE_URL) as client:
        yield client


def file_gets(recording: Recording) -> list[str]:
    """The hosted files the server downloaded."""
    return [path for path in recording.paths if path.startswith("/files/")]


@pytest.mark.parametrize(
    ("key", "name", "body", "kind", "mime_type", "suffix", "said"),
    [
        ("video", "clip", MP4, "video", "video/mp4", ".mp4", "1 video"),
        ("audio_url", "voice", WAV, "audio", "audio/wav", ".wav", "1 audio file"),
        ("model_file", "chair", GLB, "model3d", "model/gltf-binary", ".glb", "1 3D model"),
    ],
)
async def test_a_video_audio_or_3d_output_is_saved_and_linked_with_its_mime_type_without_a_preview(
    session: Client,
    simulator: PiAPISimulator,
    outputs: Path,
    key: str,
    name: str,
    body: bytes,
    kind: str,
    mime_type: str,
    suffix: str,
    said: str,
) -> None:
    url = host(simulator, name, body)
    answer_with(simulator, {key: url})

    result = await session.call_tool("kontext_edit", EDIT)

    (output,) = result_of(result).outputs
    assert (output.url, output.kind, output.mime_type, output.save_error) == (url, kind, mime_type, None)
    assert output.path is not None and Path(output.path).suffix == suffix
    assert Path(output.path).parent == outputs and Path(output.path).read_bytes() == body
    assert f": {said}." in text_of(result)
    assert [(link.uri, link.mime_type) for link in links(result)][:2] == [
        (url, mime_type),
        (Path(output.path).as_uri(), mime_type),
    ]
    assert not any(isinstance(block, ImageContent) for block in result.content)


async def test_a_text_output_is_shown_in_the_result_and_nothing_is_downloaded(
    session: Client, simulator: PiAPISimulator, outputs: Path, recording: Recording
) -> None:
    caption = sample("Qubico__joycaption__joycaption-beta-one.json")["data"]["output"]
    answer_with(simulator, caption, model="Qubico/joycaption", task_type="joycaption-beta-one")

    result = await session.call_tool("kontext_edit", EDIT)

    (output,) = result_of(result).outputs
    assert (output.kind, output.url, output.path, output.text) == ("text", None, None, caption["text"])
    assert ": 1 text." in text_of(result) and caption["text"] in text_of(result)
    assert file_gets(recording) == [] and (not outputs.exists() or list(outputs.iterdir()) == [])
    assert [link.uri for link in links(result)] == [f"piapi://tasks/{result_of(result).task_id}"]


async def test_a_mixed_result_counts_its_outputs_by_kind_and_previews_only_images(
    session: Client, simulator: PiAPISimulator
) -> None:
    first, second = host(simulator, "a.png", PNG), host(simulator, "b.png", PNG)
    clip = host(simulator, "c.mp4", MP4)
    answer_with(simulator, {"image_urls": [first, second], "video_url": clip, "description": "two views"})

    result = await session.call_tool("kontext_edit", EDIT)

    assert "completed in 0 s: 2 images, 1 video and 1 text." in text_of(result)
    assert [o.kind for o in result_of(result).outputs] == ["image", "image", "video", "text"]
    assert len([block for block in result.content if isinstance(block, ImageContent)]) == 2


async def test_an_output_whose_url_says_nothing_takes_its_kind_from_its_content(
    session: Client, simulator: PiAPISimulator
) -> None:
    url = host(simulator, "result", MOV)
    answer_with(simulator, {"result": url})

    (output,) = result_of(await session.call_tool("kontext_edit", EDIT)).outputs

    assert (output.kind, output.mime_type) == ("video", "video/quicktime")
    assert output.path is not None and output.path.endswith(".mov")


async def test_each_kind_has_its_own_size_cap_and_the_content_caps_it_too(
    session: Client, simulator: PiAPISimulator
) -> None:
    """A 51 MB video is kept as a video, refused as an "image" (images stop at 50 MB)."""
    big = MP4 + b"\0" * (51 * 1024 * 1024)
    as_video, as_image = host(simulator, "big.mp4", big), host(simulator, "big-image", big)
    answer_with(simulator, {"video_url": as_video, "image_url": as_image})

    video, image = result_of(await session.call_tool("kontext_edit", EDIT)).outputs

    assert video.path is not None and Path(video.path).stat().st_size == len(big)
    assert image.path is None and "larger than 50 MB" in (image.save_error or "")


async def test_the_output_resource_serves_any_saved_output_with_the_mime_type_of_its_content(
    session: Client, simulator: PiAPISimulator
) -> None:
    clip = host(simulator, "clip", MP4)
    answer_with(simulator, {"video": clip, "text": "a caption"})
    result = result_of(await session.call_tool("kontext_edit", EDIT))
    base = f"piapi://tasks/{result.task_id}/outputs"

    (video,) = (await session.read_resource(f"{base}/1")).contents
    (text,) = (await session.read_resource(f"{base}/2")).contents

    assert isinstance(video, BlobResourceContents) and video.mime_type == "video/mp4"
    assert base64.b64decode(video.blob) == MP4
    assert isinstance(text, BlobResourceContents) and text.mime_type == "text/plain; charset=utf-8"
    assert base64.b64decode(text.blob).decode() == "a caption"
    with pytest.raises(MCPError, match="2 output"):
        await session.read_resource(f"{base}/3")
    with pytest.raises(MCPError):
        await session.read_resource(f"piapi://tasks/{result.task_id}/images/1")


async def test_with_saving_off_only_images_are_fetched_for_previews(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, recording: Recording
) -> None:
    picture, clip, song = (
        host(simulator, "p.png", PNG),
        host(simulator, "v.mp4", MP4),
        host(simulator, "s", MP3),
    )
    answer_with(simulator, {"video_url": clip, "audio_url": song, "image_url": picture})
    server = make_server(simulator, clock, http, outputs=OutputSaver(http, None), preview=True)

    async with Client(server) as client:
        result = await client.call_tool("kontext_edit", EDIT)

    assert file_gets(recording) == ["/files/p.png"]
    assert len([block for block in result.content if isinstance(block, ImageContent)]) == 1
    assert [o.path for o in result_of(result).outputs] == [None, None, None]


async def test_a_spec_parser_reads_the_output_of_tasks_of_its_model_and_task_type(
    session: Client, simulator: PiAPISimulator, monkeypatch: pytest.MonkeyPatch, recording: Recording
) -> None:
    """With a Kling spec in the catalog, a Kling answer is read by Kling's parser, not the walk."""
    spec = replace(
        KONTEXT, model="kling", task_type="video_generation", tool=None, parse_outputs=kling.parse_outputs
    )
    others = [known for known in catalog.CATALOG.all() if known.key != spec.key]
    monkeypatch.setattr(catalog, "CATALOG", Catalog([*others, spec]))
    recorded = sample("kling__video_generation.json")["data"]["output"]
    clean, marked, cover = (
        host(simulator, "clean", MP4),
        host(simulator, "marked", MP4),
        host(simulator, "cover", JPEG),
    )
    work = recorded["works"][0]
    output = {
        **recorded,
        "video_url": clean,
        "works": [{**work, "video": {**work["video"], "resource": marked, "resource_without_watermark": clean},
                   "cover": {**work["cover"], "resource": cover}}],
    }  # fmt: skip
    answer_with(simulator, output, model="kling", task_type="video_generation")

    result = result_of(await session.call_tool("kontext_edit", EDIT))

    assert [(o.kind, o.url, o.mime_type) for o in result.outputs] == [
        ("video", clean, "video/mp4"),
        ("image", cover, "image/jpeg"),
    ]
    assert "/files/marked" not in file_gets(recording)


async def test_a_spec_parser_that_fails_leaves_the_walk_to_find_the_outputs(
    session: Client, simulator: PiAPISimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(output: Any) -> list[OutputRef]:
        raise KeyError("songs")

    spec: TaskSpec = replace(KONTEXT, parse_outputs=broken)
    monkeypatch.setattr(catalog, "CATALOG", Catalog([spec]))
    url = host(simulator, "x.png", PNG)
    answer_with(simulator, {"image_url": url})

    result = result_of(await session.call_tool("kontext_edit", EDIT))

    assert [(o.kind, o.url) for o in result.outputs] == [("image", url)]


async def test_a_task_reference_takes_the_first_output_of_the_fields_kind(
    session: Client, simulator: PiAPISimulator
) -> None:
    """piapi://tasks/{id} for an image field skips a video to its cover; #1 (the video) is refused."""
    clip, cover = host(simulator, "v.mp4", MP4), host(simulator, "cover.png", PNG)
    answer_with(simulator, {"video_url": clip, "thumbnail": {"url": cover}})
    first = result_of(await session.call_tool("kontext_edit", EDIT))

    await session.call_tool("kontext_edit", {**EDIT, "image": f"piapi://tasks/{first.task_id}"})
    refused = await session.call_tool("kontext_edit", {**EDIT, "image": f"piapi://tasks/{first.task_id}#1"})

    assert [task.input["image"] for task in simulator.tasks.values()][1:] == [cover]
    assert refused.is_error and f"Output #1 of task {first.task_id} is a video, not an image" in text_of(
        refused
    )


async def test_list_tasks_records_output_urls_of_every_kind(
    session: Client, simulator: PiAPISimulator
) -> None:
    clip, song = host(simulator, "v.mp4", MP4), host(simulator, "s.wav", WAV)
    answer_with(simulator, {"video": clip, "songs": [{"song_path": song, "lyrics": "la la"}]})
    await session.call_tool("kontext_edit", EDIT)

    listed = (await session.call_tool("list_tasks", {})).structured_content or {}

    assert listed["tasks"][0]["outputs"] == [clip, song]
    assert len(listed["tasks"][0]["local_paths"]) == 2


async def test_the_published_task_result_schema_stays_lean(session: Client) -> None:
    """Its full shape once (get_task), its core on the other task tools; no prose (4,184 bytes before issue 8)."""
    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    full = tools["get_task"].output_schema or {}
    cores = [
        tool.output_schema
        for name, tool in tools.items()
        if name not in ("get_task", "list_tasks", "get_account")
    ]

    assert "outputs" in full["properties"] and "images" not in full["properties"]
    assert "description" not in json.dumps(full)
    assert len(json.dumps(full, separators=(",", ":"))) <= 1_300
    assert cores and all(core == cores[0] for core in cores)
    assert set((cores[0] or {})["properties"]) == {"task_id", "status", "done", "outputs"}
    assert len(json.dumps(cores[0], separators=(",", ":"))) <= 250


# --- media inputs of every kind ------------------------------------------------------------------


@pytest.fixture
async def resolver(http: httpx2.AsyncClient, clock: ManualClock, tmp_path: Path) -> ImageResolver:
    """The resolver every media field goes through, uploading to the simulator's upload endpoint."""
    client = PiAPIClient(
        http,
        api_key=API_KEY,
        base_url=SIM_BASE_URL,
        upload_url=f"{SIM_BASE_URL}/api/ephemeral_resource",
        clock=clock,
        jitter=lambda: 0.5,
    )
    return ImageResolver(
        upload=client.upload_file, look_up_task=client.get_task, confinement=Confinement([tmp_path])
    )


@pytest.mark.parametrize(
    ("kind", "body", "extension"), [("video", MP4, "mp4"), ("audio", WAV, "wav"), ("audio", MP3, "mp3")]
)
async def test_video_and_audio_fields_take_local_files_and_data_uris_judged_by_content(
    resolver: ImageResolver, simulator: PiAPISimulator, tmp_path: Path, kind: str, body: bytes, extension: str
) -> None:
    local = tmp_path / "clip.bin"
    local.write_bytes(body)
    data_uri = "data:application/octet-stream;base64," + base64.b64encode(body).decode()

    from_file = await resolver.resolve(str(local), kind=kind)
    from_data = await resolver.resolve(data_uri, kind=kind)

    assert from_file.uploaded and from_file.url.endswith(f"/clip.{extension}")
    assert from_data.uploaded and from_data.url.endswith(f".{extension}")
    assert simulator.uploads[from_file.url] == body and simulator.uploads[from_data.url] == body


@pytest.mark.parametrize(
    ("kind", "body", "said"),
    [
        ("video", PNG, "not an MP4 video"),
        ("video", MOV, "not an MP4 video"),
        ("audio", MP4, "not a WAV or MP3 audio file"),
        ("image", WAV, "not a PNG, JPEG or WebP image"),
        ("video", MP4 + b"\0" * (10 * 1024 * 1024), "over PiAPI's 10 MB upload limit"),
    ],
)
async def test_media_of_the_wrong_kind_or_over_the_upload_limit_is_refused_before_any_upload(
    resolver: ImageResolver, simulator: PiAPISimulator, tmp_path: Path, kind: str, body: bytes, said: str
) -> None:
    local = tmp_path / "input.mp4"
    local.write_bytes(body)

    with pytest.raises(ImageInputError, match=said):
        await resolver.resolve(str(local), kind=kind)

    assert simulator.uploads == {}
