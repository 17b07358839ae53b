"""Framepack (``Qubico/framepack``): image-to-video between a start and an end frame.

Thin (``piapi-catalog.md`` §5.7): the page body was not captured; PiAPI's Postman collection names
``prompt``, ``negative_prompt``, ``start_image``, ``end_image`` and ``duration`` (unit not
given), so the input passes extra keys and checks little. Output assumed ``video_url``, as the
other Qubico video tools answer.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import ImageInput, TaskInput, TaskSpec


class FramepackInput(TaskInput):
    """The ``input`` of ``Qubico/framepack``/``img2video`` (Postman field names)."""

    model_config = ConfigDict(extra="allow")

    prompt: str | None = Field(default=None, max_length=4000)
    negative_prompt: str | None = Field(default=None, max_length=4000)
    start_image: ImageInput = Field(description="The first frame.")
    end_image: ImageInput | None = Field(default=None, description="The last frame.")
    duration: float | None = Field(default=None, gt=0, le=120)


FRAMEPACK = TaskSpec(
    model="Qubico/framepack",
    task_type="img2video",
    input=FramepackInput,
    summary="Animate a picture, optionally towards an end frame (Framepack).",
    output="video",
    typical_seconds=300.0,  # not documented
    example={"prompt": "the flower opens", "start_image": "https://example.com/bud.png"},
    noun="video",
)

SPECS = (FRAMEPACK,)
