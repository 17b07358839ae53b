"""Luma Dream Machine (``luma``): video generation and extension.

Facts from ``piapi-catalog.md`` §5.5 and PiAPI's Dream Machine pages. Two input schemas coexist:
the older ``key_frames``/``model_name``/``expand_prompt`` and the newer ``model``/``start_image``/
``end_image`` (PiAPI's 2026 example; contradiction 21 of the notes: newer for new builds, both
accepted). Both are declared. The completed output gives the video twice (``video``, watermarked,
and ``video_raw``) plus ``thumbnail`` and ``last_frame`` images, each an object with ``url``; the
documented example ran 3 min 10 s and consumed 2,000,000 units (US$0.20).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import DurationDriver, ImageInput, TaskInput, TaskSpec
from piapi_mcp.models import OutputKind, OutputRef, url_output, walk_outputs


def _url(output: Mapping[str, Any], key: str, kind: OutputKind) -> OutputRef | None:
    value = output.get(key)
    return url_output(value.get("url"), kind) if isinstance(value, Mapping) else url_output(value, kind)


def parse_outputs(output: Mapping[str, Any]) -> list[OutputRef]:
    """The clean video (``video_raw``, else the watermarked ``video``), then the thumbnail and last frame."""
    video = _url(output, "video_raw", "video") or _url(output, "video", "video")
    pictures = [_url(output, key, "image") for key in ("thumbnail", "last_frame")]
    found = [item for item in (video, *pictures) if item is not None]
    return found or walk_outputs(output)


class LumaVideoInput(TaskInput):
    """The ``input`` of ``luma``/``video_generation`` (both schema generations; extra keys pass)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=4000, description="What happens in the video.")
    model: str | None = Field(
        default=None, max_length=32, description="Sub-model, e.g. ray-v2 (newer schema)."
    )
    start_image: ImageInput | None = Field(default=None, description="The first frame (newer schema).")
    end_image: ImageInput | None = Field(default=None, description="The last frame (newer schema).")
    duration: Literal[5, 10] | None = None
    aspect_ratio: str | None = Field(default=None, max_length=8, description="e.g. 16:9, 9:16, 4:3.")
    loop: bool | None = None
    expand_prompt: bool | None = Field(
        default=None, description="Let Luma rewrite the prompt (older schema)."
    )
    key_frames: dict[str, Any] | None = Field(default=None, description="Older schema: {frame0, frame1}.")


class LumaExtendInput(TaskInput):
    """The ``input`` of ``luma``/``extend_video`` (Postman field names only)."""

    model_config = ConfigDict(extra="allow")

    prompt: str | None = Field(default=None, max_length=4000)
    key_frames: dict[str, Any] = Field(description="frame0 names the video to extend.")


#: The completed example of https://piapi.ai/docs/dream-machine/get-video (2026-01-07).
LUMA_OUTPUT = {
    "prompt": "Fly fishing",
    "internal_state": "completed",
    "created_at": "2026-01-07T01:36:13.128Z",
    "video": {
        "url": "https://storage.cdn-luma.com/dream-machine/d76fbe61/ee563707/fly_fishing_watermarked.mp4",
        "width": 1152,
        "height": 864,
    },
    "video_raw": {
        "url": "https://storage.cdn-luma.com/dream-machine/d76fbe61/73e682ad/fly_fishing.mp4",
        "width": 1152,
        "height": 864,
    },
    "thumbnail": {
        "url": "https://imagedelivery.net/1KomXrSWiTojGGip43n0SQ/5cc04988-7aaf-416d-f9a3-6fc73c789b00/public",
        "width": 1152,
        "height": 864,
    },
    "last_frame": {
        "url": "https://storage.cdn-luma.com/dream-machine/d76fbe61/8c6372b7/fly_fishing_last_frame.jpg",
        "width": 1152,
        "height": 864,
    },
}

LUMA_VIDEO = TaskSpec(
    model="luma",
    task_type="video_generation",
    input=LumaVideoInput,
    summary="Make a video from a text, or between a start and an end image (Luma Dream Machine).",
    output="video",
    typical_seconds=190.0,  # the documented example: 3 min 10 s
    example={"prompt": "Fly fishing", "model": "ray-v2", "duration": 5, "aspect_ratio": "16:9"},
    duration_drivers=(DurationDriver(("duration",), 5),),
    noun="video",
    output_example=LUMA_OUTPUT,
    parse_outputs=parse_outputs,
    price_usd=0.20,
)
LUMA_EXTEND = TaskSpec(
    model="luma",
    task_type="extend_video",
    input=LumaExtendInput,
    summary="Continue a Luma video (Luma Dream Machine).",
    output="video",
    typical_seconds=190.0,
    example={
        "prompt": "the fisherman lands a trout",
        "key_frames": {"frame0": {"type": "generation", "id": "f38e2944-a5fe-44b4-9464-920c94276d74"}},
    },
    noun="extension",
    output_example=LUMA_OUTPUT,
    parse_outputs=parse_outputs,
)

SPECS = (LUMA_VIDEO, LUMA_EXTEND)
