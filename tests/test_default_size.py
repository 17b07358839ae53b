"""An edit's output size, when not given, follows its input picture's aspect ratio (long side 1024)."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from PIL import Image

from piapi_mcp import ManualClock, PiAPISimulator
from tests.conftest import make_server

pytestmark = pytest.mark.anyio

PROMPT = "make the sky purple"


def png(width: int, height: int) -> bytes:
    """A small PNG of the given size."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 160)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    folder = tmp_path / "pictures"
    folder.mkdir()
    return folder


@pytest.fixture
async def session(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, pictures: Path
) -> AsyncIterator[Client]:
    server = make_server(simulator, clock, http, allowed_dirs=[pictures], preview=False)
    async with Client(server, raise_exceptions=True) as client:
        yield client


async def edit(session: Client, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool("kontext_edit", {"prompt": PROMPT, **arguments})
    assert not result.is_error, result.content
    return result.structured_content or {}


async def output_size(http: httpx2.AsyncClient, data: dict[str, Any]) -> tuple[int, int]:
    """The pixel size of the edit's output image, as the simulator made it."""
    response = await http.get(data["outputs"][0]["url"])
    with Image.open(io.BytesIO(response.content)) as picture:
        return picture.size


async def test_a_landscape_local_picture_is_edited_at_its_aspect_with_long_side_1024(
    session: Client, simulator: PiAPISimulator, http: httpx2.AsyncClient, pictures: Path
) -> None:
    """A 1600 x 900 file, no size given: PiAPI is asked for 1024 x 576 and the output is that size."""
    (pictures / "wide.png").write_bytes(png(1600, 900))

    data = await edit(session, image=str(pictures / "wide.png"))

    (task,) = simulator.tasks.values()
    assert (task.input["width"], task.input["height"]) == (1024, 576)
    assert await output_size(http, data) == (1024, 576)


async def test_a_portrait_data_uri_is_edited_at_its_aspect_with_long_side_1024(
    session: Client, simulator: PiAPISimulator, http: httpx2.AsyncClient
) -> None:
    """A 600 x 800 picture given as a data: URI comes back 768 x 1024."""
    uri = "data:image/png;base64," + base64.b64encode(png(600, 800)).decode()

    data = await edit(session, image=uri)

    assert await output_size(http, data) == (768, 1024)


async def test_sides_are_rounded_to_multiples_of_16_keeping_the_aspect_close(
    session: Client, simulator: PiAPISimulator, pictures: Path
) -> None:
    """A 1000 x 750 (4:3) picture gives 1024 x 768; a 1001 x 333 one 1024 x 336 (a multiple of 16)."""
    (pictures / "four-three.png").write_bytes(png(1000, 750))
    (pictures / "odd.png").write_bytes(png(1001, 333))

    await edit(session, image=str(pictures / "four-three.png"))
    await edit(session, image=str(pictures / "odd.png"))

    sizes = [(task.input["width"], task.input["height"]) for task in simulator.tasks.values()]
    assert sizes == [(1024, 768), (1024, 336)]


async def test_a_very_narrow_picture_keeps_the_short_side_at_piapis_minimum(
    session: Client, simulator: PiAPISimulator, pictures: Path
) -> None:
    """A 4000 x 200 strip would give a 51 px side: it is held at 128 px, PiAPI's minimum."""
    (pictures / "strip.png").write_bytes(png(4000, 200))

    await edit(session, image=str(pictures / "strip.png"))

    (task,) = simulator.tasks.values()
    assert (task.input["width"], task.input["height"]) == (1024, 128)


async def test_a_size_the_caller_gave_always_wins(
    session: Client, simulator: PiAPISimulator, http: httpx2.AsyncClient, pictures: Path
) -> None:
    """width and height given: sent as given, whatever the picture's aspect."""
    (pictures / "wide.png").write_bytes(png(1600, 900))

    data = await edit(session, image=str(pictures / "wide.png"), width=512, height=640)

    (task,) = simulator.tasks.values()
    assert (task.input["width"], task.input["height"]) == (512, 640)
    assert await output_size(http, data) == (512, 640)


async def test_one_side_given_the_other_follows_the_pictures_aspect(
    session: Client, simulator: PiAPISimulator, pictures: Path
) -> None:
    """Only width=512 for a 16:9 picture: height 288; only height=2048 for it: width at PiAPI's 2048 cap."""
    (pictures / "wide.png").write_bytes(png(1600, 900))

    await edit(session, image=str(pictures / "wide.png"), width=512)
    await edit(session, image=str(pictures / "wide.png"), height=512, force_new=True)

    sizes = [(task.input["width"], task.input["height"]) for task in simulator.tasks.values()]
    assert sizes == [(512, 288), (912, 512)]


async def test_a_url_picture_is_not_fetched_for_its_size_and_gets_1024_square(
    session: Client, simulator: PiAPISimulator
) -> None:
    """A URL's picture is never downloaded just to read its size: the former 1024 x 1024 is sent."""
    await edit(session, image="https://example.com/photo.png")

    (task,) = simulator.tasks.values()
    assert (task.input["width"], task.input["height"]) == (1024, 1024)


async def test_kontext_edits_size_fields_say_they_follow_the_input_picture(session: Client) -> None:
    """tools/list tells the model what happens when the size is left out."""
    (tool,) = [tool for tool in (await session.list_tools()).tools if tool.name == "kontext_edit"]
    properties = tool.input_schema["properties"]

    for name in ("width", "height"):
        assert "follows the input picture's aspect ratio, long side 1024" in properties[name]["description"]
        assert properties[name].get("default") is None


async def test_the_simulator_draws_an_output_as_large_as_2048_pixels_wide(
    session: Client, simulator: PiAPISimulator, http: httpx2.AsyncClient, pictures: Path
) -> None:
    """The sandbox honours PiAPI's largest side: 2048 x 512 comes back as a 2048 x 512 picture."""
    (pictures / "wide.png").write_bytes(png(1600, 900))

    data = await edit(session, image=str(pictures / "wide.png"), width=2048, height=512)

    assert await output_size(http, data) == (2048, 512)
