"""Seedance (``seedance``): Seedance 2 video (normal, fast, less-restriction) and watermark removal.

Thin (``piapi-catalog.md`` §5.8): beyond PiAPI's CLI, fields come from a third-party PiAPI client:
``image_urls`` (first and last frames, or up to 9 references named ``@image1``… in the prompt),
duration 4 to 15, aspect ratios 21:9 to 9:16 (``auto`` with frames), resolution 480p/720p/1080p
(fast tiers cap at 720p). ``mode`` is never defaulted: PiAPI infers it from the references, and
forcing one broke image flows (CLI). Less-restriction tiers: same schema, +25 % price. The legacy
``seedance-2-preview`` is left out (dropped from PiAPI's newest CLI catalog). Output ``video``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import ImageInput, TaskInput, TaskSpec, VideoInput


class SeedanceInput(TaskInput):
    """The ``input`` of a Seedance 2 task (third-party field names; extra keys pass)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=4000, description="What happens; references as @image1…")
    mode: Literal["text_to_video", "first_last_frames", "omni_reference"] | None = Field(
        default=None, description="Inferred from the references when left out."
    )
    image_urls: list[ImageInput] | None = Field(
        default=None, max_length=9, description="[first, last] frames, or up to 9 references."
    )
    duration: int | None = Field(default=None, ge=4, le=15)
    aspect_ratio: Literal["21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "auto"] | None = None
    resolution: Literal["480p", "720p", "1080p"] | None = Field(
        default=None, description="1080p on seedance-2 only."
    )


class SeedanceWatermarkInput(TaskInput):
    """The ``input`` of ``seedance``/``remove-watermark`` (field name by analogy with Sora2's)."""

    model_config = ConfigDict(extra="allow")

    video_url: VideoInput


_OUTPUT = {"video": "https://img.theapi.app/ephemeral/seedance.mp4"}
_EXAMPLE: dict[str, Any] = {
    "prompt": "a hummingbird drinks from a flower, macro",
    "duration": 5,
    "aspect_ratio": "16:9",
}


def _seedance(task_type: str, summary: str, example: dict[str, Any] = _EXAMPLE) -> TaskSpec:
    return TaskSpec(
        model="seedance",
        task_type=task_type,
        input=SeedanceInput,
        summary=summary,
        output="video",
        typical_seconds=240.0,  # not documented
        example=example,
        noun="video",
        output_example=_OUTPUT,
    )


SPECS = (
    _seedance("seedance-2", "Make a video from a text, frames or reference images (Seedance 2)."),
    _seedance(
        "seedance-2-fast",
        "Make a video faster, at most 720p (Seedance 2 fast).",
        {**_EXAMPLE, "resolution": "720p"},
    ),
    _seedance("seedance-2-less-restriction", "Seedance 2 with a more permissive review (+25 % price)."),
    _seedance(
        "seedance-2-fast-less-restriction", "Seedance 2 fast with a more permissive review (+25 % price)."
    ),
    TaskSpec(
        model="seedance",
        task_type="remove-watermark",
        input=SeedanceWatermarkInput,
        summary="Remove the watermark from a video (Seedance).",
        output="video",
        typical_seconds=120.0,
        example={"video_url": "https://example.com/clip.mp4"},
        noun="cleaned video",
        output_example=_OUTPUT,
    ),
)
