"""flux_generate: Flux dev text-to-image, and image-to-image when an image is given (one tool, two specs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.types import ImageContent

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.arguments import lean_schema
from piapi_mcp.catalog.flux import FluxGenerateArguments
from tests.helpers import links_of, png_bytes, saving_client, text_of

pytestmark = pytest.mark.anyio


async def test_text_to_image_completes_with_an_image_output_its_preview_and_links(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    """A prompt alone runs Qubico/flux1-dev txt2img; the image comes back saved, previewed and linked."""
    async with saving_client(simulator, clock, http, tmp_path) as client:
        result = await client.call_tool("flux_generate", {"prompt": "a lighthouse at dawn", "width": 768})

    assert not result.is_error, text_of(result)
    data: dict[str, Any] = result.structured_content or {}
    (task,) = simulator.tasks.values()
    assert (task.model, task.task_type) == ("Qubico/flux1-dev", "txt2img")
    assert (task.input["prompt"], task.input["width"], task.input["height"]) == (
        "a lighthouse at dawn",
        768,
        1024,
    )
    assert "image" not in task.input and "denoise" not in task.input
    assert data["status"] == "completed" and data["task_id"] == task.task_id
    assert any(isinstance(block, ImageContent) for block in result.content), "no preview"
    assert any(link.mime_type == "image/png" and link.uri.startswith("http") for link in links_of(result))
    assert list((tmp_path / "out").iterdir()), "the image was not saved"


async def test_a_local_image_turns_it_into_image_to_image_with_the_image_uploaded(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    """With an image (a local file), the call runs img2img: the file is uploaded and its URL sent."""
    picture = png_bytes()
    async with saving_client(simulator, clock, http, tmp_path) as client:
        (tmp_path / "in" / "photo.png").write_bytes(picture)
        result = await client.call_tool(
            "flux_generate",
            {"prompt": "as a watercolour", "image": str(tmp_path / "in" / "photo.png"), "denoise": 0.5},
        )

    assert not result.is_error, text_of(result)
    (task,) = simulator.tasks.values()
    assert (task.model, task.task_type) == ("Qubico/flux1-dev", "img2img")
    assert list(simulator.uploads.values()) == [picture]
    assert task.input["image"].startswith("http://piapi.test/_uploads/")
    assert (task.input["prompt"], task.input["denoise"]) == ("as a watercolour", 0.5)
    assert any(isinstance(block, ImageContent) for block in result.content)


async def test_image_to_image_sends_the_documented_default_denoise(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """Without denoise, img2img gets PiAPI's documented default 0.7; no width or height is sent."""
    result = await mcp_client.call_tool(
        "flux_generate", {"prompt": "at night", "image": "https://example.com/photo.png", "wait_seconds": 0}
    )

    assert not result.is_error, text_of(result)
    (task,) = simulator.tasks.values()
    assert task.task_type == "img2img" and task.input["denoise"] == 0.7
    assert task.input["image"] == "https://example.com/photo.png"


@pytest.mark.parametrize(
    ("arguments", "phrases"),
    [
        (
            {"width": 2048, "height": 1024},
            ["`width` × `height` must be at most 1,048,576 pixels", "2048 × 1024"],
        ),
        ({"width": 96}, ["`width` must be at least 128"]),
        ({"image": "https://example.com/a.png", "height": 512}, ["`width` and `height` apply only without"]),
        ({"denoise": 0.3}, ["`denoise` applies only with an `image`"]),
        ({"image": "https://example.com/a.png", "denoise": 0}, ["`denoise` must be"]),
    ],
    ids=["area", "too-narrow", "size-with-image", "denoise-without-image", "denoise-zero"],
)
async def test_arguments_that_do_not_fit_are_refused_in_one_sentence_before_anything_is_sent(
    mcp_client: Client, simulator: PiAPISimulator, arguments: dict[str, Any], phrases: list[str]
) -> None:
    """PiAPI's rules (at most 1,048,576 pixels; size for text-to-image only; 0 < denoise) hold up front."""
    result = await mcp_client.call_tool("flux_generate", {"prompt": "a cat", **arguments})

    message = text_of(result)
    assert result.is_error
    assert all(phrase in message for phrase in phrases), message
    assert message.count("\n") == 0 and message.endswith("flux_generate again.")
    assert simulator.requests == []


async def test_flux_generate_schema_is_its_arguments_model_plus_the_controls(mcp_client: Client) -> None:
    """The published schema is FluxGenerateArguments' own (titles aside), then wait_seconds and force_new."""
    tools = {tool.name: tool for tool in (await mcp_client.list_tools()).tools}
    schema = tools["flux_generate"].input_schema
    model_schema = lean_schema(FluxGenerateArguments.model_json_schema())

    assert list(schema["properties"]) == [*model_schema["properties"], "wait_seconds", "force_new"]
    for name, prop in model_schema["properties"].items():
        assert schema["properties"][name] == prop, name
    assert schema["required"] == ["prompt"]
