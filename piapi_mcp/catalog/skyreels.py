"""Skyreels (``Qubico/skyreels``): image-to-video.

Facts from PiAPI's Skyreels page (``piapi-catalog.md`` §5.7): ``prompt`` and ``image`` (URL or
base64) required, ``aspect_ratio`` 16:9, 9:16 or 1:1, ``guidance_scale`` above 0 and at most 10
(default 3.5). It answers ``video_url`` (PiAPI's MCP server reads it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import ImageInput, TaskInput, TaskSpec


class SkyreelsInput(TaskInput):
    """The ``input`` of ``Qubico/skyreels``/``img2video``."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=4000, description="What happens in the video.")
    negative_prompt: str | None = Field(default=None, max_length=4000)
    image: ImageInput = Field(description="The first frame (URL or base64).")
    aspect_ratio: Literal["16:9", "9:16", "1:1"] | None = None
    guidance_scale: float | None = Field(default=None, gt=0, le=10, description="Prompt adherence (3.5).")


SKYREELS = TaskSpec(
    model="Qubico/skyreels",
    task_type="img2video",
    input=SkyreelsInput,
    summary="Animate a picture into a video (Skyreels).",
    output="video",
    typical_seconds=300.0,  # not documented
    example={
        "prompt": "the girl turns and smiles",
        "image": "https://example.com/girl.png",
        "aspect_ratio": "9:16",
    },
    noun="video",
)

SPECS = (SKYREELS,)
