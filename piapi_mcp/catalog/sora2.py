"""Sora 2 (``sora2``): video, pro video and watermark removal.

Thin (``piapi-catalog.md`` §5.8, Postman field names only): ``sora2-video`` takes ``prompt``,
``aspect_ratio``, ``duration`` and ``image_url``; ``sora2-pro-video`` adds ``resolution`` and drops
``image_url``; ``remove-watermark`` takes ``video_url``. Outputs were not captured: PiAPI's newer
proxies answer ``video``.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import ImageInput, TaskInput, TaskSpec, VideoInput


class Sora2Input(TaskInput):
    """The ``input`` of ``sora2``/``sora2-video`` (extra keys pass)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=4000, description="What happens in the video.")
    aspect_ratio: str | None = Field(default=None, max_length=8)
    duration: int | None = Field(default=None, ge=1, le=30)
    image_url: ImageInput | None = Field(default=None, description="The first frame.")


class Sora2ProInput(TaskInput):
    """The ``input`` of ``sora2``/``sora2-pro-video``."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=4000)
    aspect_ratio: str | None = Field(default=None, max_length=8)
    duration: int | None = Field(default=None, ge=1, le=30)
    resolution: str | None = Field(default=None, max_length=16)


class Sora2WatermarkInput(TaskInput):
    """The ``input`` of ``sora2``/``remove-watermark``."""

    model_config = ConfigDict(extra="allow")

    video_url: VideoInput


_OUTPUT = {"video": "https://img.theapi.app/ephemeral/sora2.mp4"}
_EXAMPLE = {"prompt": "a skateboarder lands a kickflip at dusk", "aspect_ratio": "16:9", "duration": 10}

SPECS = (
    TaskSpec(
        model="sora2",
        task_type="sora2-video",
        input=Sora2Input,
        summary="Make a video with sound from a text or a first frame (Sora 2).",
        output="video",
        typical_seconds=300.0,  # not documented
        example=_EXAMPLE,
        noun="video",
        output_example=_OUTPUT,
    ),
    TaskSpec(
        model="sora2",
        task_type="sora2-pro-video",
        input=Sora2ProInput,
        summary="Make a higher-quality video from a text (Sora 2 pro).",
        output="video",
        typical_seconds=600.0,
        example=_EXAMPLE,
        noun="video",
        output_example=_OUTPUT,
    ),
    TaskSpec(
        model="sora2",
        task_type="remove-watermark",
        input=Sora2WatermarkInput,
        summary="Remove the watermark from a Sora video.",
        output="video",
        typical_seconds=120.0,
        example={"video_url": "https://example.com/sora.mp4"},
        noun="cleaned video",
        output_example=_OUTPUT,
    ),
)
