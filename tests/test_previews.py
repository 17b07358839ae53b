"""Cheap previews: a photograph's result stays small, previews keep shape and alpha, and few decode at once."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from anyio.lowlevel import checkpoint
from mcp import Client
from mcp.types import CallToolResult, ImageContent, ResourceLink
from PIL import Image

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.media import PREVIEW_WORKERS, MediaKind, OutputSaver, make_preview
from piapi_mcp.simulator.render import photo
from tests.conftest import make_server
from tests.test_hostile_outputs import host, serve_outputs

pytestmark = pytest.mark.anyio

#: The issue's targets: a whole result with a photographic 1024² output, and its preview's base64.
RESULT_BUDGET = 64 * 1024
PREVIEW_BUDGET = 60 * 1024


@pytest.fixture(autouse=True)
def photographic_outputs(simulator: PiAPISimulator) -> None:
    """Image tasks finish at once and their output is the simulator's 1024² photograph."""
    simulator.controls.queue_seconds = 0
    simulator.controls.duration = 0
    simulator.controls.photo_outputs = True


@pytest.fixture
async def client(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> AsyncIterator[Client]:
    """A server with its default preview setting, saving outputs."""
    server = make_server(simulator, clock, http, outputs=OutputSaver(http, tmp_path / "outputs"))
    async with Client(server, raise_exceptions=True) as session:
        yield session


async def generate(session: Client, **extra: Any) -> CallToolResult:
    return await session.call_tool(
        "flux_generate", {"prompt": "a lighthouse at dawn", "width": 1024, "height": 1024, **extra}
    )


def previews(result: CallToolResult) -> list[ImageContent]:
    return [block for block in result.content if isinstance(block, ImageContent)]


def decoded(preview: ImageContent) -> Image.Image:
    with Image.open(io.BytesIO(base64.b64decode(preview.data))) as image:
        image.load()
        return image


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


async def test_a_result_with_a_photographic_1024_output_stays_under_64_kb_with_its_preview(
    client: Client,
) -> None:
    """The whole serialised result, preview included, fits the budget; the photo itself is ~200 KB."""
    result = await generate(client)

    (preview,) = previews(result)
    assert not result.is_error
    assert len(photo()) > 3 * RESULT_BUDGET  # a photograph, not a flat colour that compresses to nothing
    assert len(result.model_dump_json(by_alias=True, exclude_none=True)) <= RESULT_BUDGET
    assert len(preview.data) <= PREVIEW_BUDGET


async def test_the_preview_is_there_by_default_at_about_512_px_with_the_full_image_a_link_away(
    client: Client,
) -> None:
    result = await generate(client)

    (preview,) = previews(result)
    thumb = decoded(preview)
    assert preview.mime_type == "image/jpeg"
    assert 480 <= max(thumb.size) <= 512
    output = (result.structured_content or {})["outputs"][0]
    assert output["url"] in [str(block.uri) for block in result.content if isinstance(block, ResourceLink)]


@pytest.mark.parametrize(("size", "fmt"), [((1600, 900), "JPEG"), ((700, 1400), "PNG")])
async def test_the_preview_keeps_the_aspect_ratio(
    simulator: PiAPISimulator, client: Client, size: tuple[int, int], fmt: str
) -> None:
    with Image.open(io.BytesIO(photo())) as source:
        picture = source.convert("RGB").resize(size)
    serve_outputs(simulator, host(simulator, f"wide.{fmt.lower()}", encoded(picture, fmt)))

    (preview,) = previews(await generate(client))

    thumb = decoded(preview)
    assert max(thumb.size) == 512
    assert abs(thumb.size[0] / thumb.size[1] - size[0] / size[1]) < 0.01


async def test_a_png_with_transparency_previews_and_keeps_its_alpha(
    simulator: PiAPISimulator, client: Client
) -> None:
    with Image.open(io.BytesIO(photo())) as source:
        picture = source.convert("RGBA")
    # A transparent hole in the middle: a cut-out, as background-removal models make.
    picture.paste((0, 0, 0, 0), (256, 256, 768, 768))
    serve_outputs(simulator, host(simulator, "cutout.png", encoded(picture, "PNG")))

    result = await generate(client)

    (preview,) = previews(result)
    thumb = decoded(preview)
    assert len(preview.data) <= PREVIEW_BUDGET and max(thumb.size) == 512
    assert thumb.mode == "RGBA"
    assert thumb.getpixel((256, 256))[3] == 0  # type: ignore[index]
    assert thumb.getpixel((20, 20))[3] == 255  # type: ignore[index]


async def test_a_colour_keyed_png_keeps_its_transparent_colour_transparent(
    simulator: PiAPISimulator, client: Client
) -> None:
    picture = Image.new("RGB", (1200, 800), (10, 200, 30))
    picture.paste((255, 0, 255), (0, 0, 600, 800))  # the key colour: transparent (tRNS), left half
    out = io.BytesIO()
    picture.save(out, format="PNG", transparency=(255, 0, 255))
    serve_outputs(simulator, host(simulator, "keyed.png", out.getvalue()))

    (preview,) = previews(await generate(client))

    thumb = decoded(preview)
    assert thumb.size == (512, 341) and thumb.mode == "RGBA"
    assert thumb.getpixel((10, 10))[3] == 0 and thumb.getpixel((500, 300))[3] == 255  # type: ignore[index]
    # Keyed before resampling: no opaque magenta fringe where the two halves meet.
    fringe = [(x, y) for x in range(240, 272) for y in range(0, 341, 31)]
    assert all(thumb.getpixel(xy)[0] < 128 for xy in fringe if thumb.getpixel(xy)[3] > 200)  # type: ignore[index]


async def test_an_opaque_png_previews_as_a_jpeg_of_the_budget(
    simulator: PiAPISimulator, client: Client
) -> None:
    with Image.open(io.BytesIO(photo())) as source:
        picture = source.convert("RGBA")  # an alpha channel that is opaque everywhere
    serve_outputs(simulator, host(simulator, "opaque.png", encoded(picture, "PNG")))

    (preview,) = previews(await generate(client))

    assert preview.mime_type == "image/jpeg" and len(preview.data) <= PREVIEW_BUDGET


class Watched:
    """A previewer that counts how many previews run at once and holds each until released."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.running = 0
        self.most = 0
        self.started = 0
        self.released = 0

    def __call__(self, source: Path | bytes, kind: MediaKind | None) -> tuple[bytes, str] | None:
        with self.lock:
            self.running += 1
            self.started += 1
            self.most = max(self.most, self.running)
            self.lock.notify_all()
            mine = self.started
            # Held until the test lets this one go (a safety timeout only, never reached when green).
            self.lock.wait_for(lambda: self.released >= mine, timeout=60)
        try:
            return make_preview(source, kind)
        finally:
            with self.lock:
                self.running -= 1

    def wait_started(self, count: int) -> None:
        with self.lock:
            self.lock.wait_for(lambda: self.started >= count, timeout=60)

    def release_one(self) -> None:
        with self.lock:
            self.released += 1
            self.lock.notify_all()

    def release_all(self) -> None:
        with self.lock:
            self.released = 1_000_000
            self.lock.notify_all()


async def test_previews_of_many_concurrent_completions_run_at_most_the_pool_size_at_once(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    calls = PREVIEW_WORKERS * 3
    watched = Watched()
    server = make_server(simulator, clock, http, outputs=OutputSaver(http, None), previewer=watched)
    results: list[CallToolResult] = []

    async def one(session: Client, index: int) -> None:
        results.append(await generate(session, prompt=f"lighthouse number {index}"))

    running: list[int] = []
    async with Client(server, raise_exceptions=True) as session, anyio.create_task_group() as group:
        for index in range(calls):
            group.start_soon(one, session, index)
        try:
            for done in range(calls):
                # Wait until the pool is full (or only the last ones are left), let every other call
                # reach the pool and queue there, then count.
                await anyio.to_thread.run_sync(watched.wait_started, min(calls, done + PREVIEW_WORKERS))
                for _ in range(200):
                    await checkpoint()
                await anyio.wait_all_tasks_blocked()
                running.append(watched.running)
                watched.release_one()
        finally:
            watched.release_all()

    assert max(running) == watched.most == PREVIEW_WORKERS
    assert len(results) == calls and all(len(previews(result)) == 1 for result in results)
