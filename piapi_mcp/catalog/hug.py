"""AI Hug (``Qubico/hug-video``/``image_to_video``): a photo of two people turned into a hug video.

Facts from PiAPI's AI Hug page (``piapi-catalog.md`` §5.15): ``image_url`` required; outputs kept
one day. The completed shape was not captured: ``video_url``, as the other Qubico video tools.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import ImageInput, TaskInput, TaskSpec


class HugInput(TaskInput):
    """The ``input`` of ``Qubico/hug-video``/``image_to_video``."""

    model_config = ConfigDict(extra="allow")

    image_url: ImageInput = Field(description="A photo of two people.")


HUG = TaskSpec(
    model="Qubico/hug-video",
    task_type="image_to_video",
    input=HugInput,
    summary="Turn a photo of two people into a video of them hugging (AI Hug).",
    output="video",
    typical_seconds=180.0,  # not documented
    example={"image_url": "https://example.com/two-people.png"},
    noun="hug video",
)

SPECS = (HUG,)
