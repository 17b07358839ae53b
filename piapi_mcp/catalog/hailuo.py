"""Hailuo (``hailuo``): video generation, the sub-model in ``input.model``.

Facts from PiAPI's Hailuo pages (``piapi-catalog.md`` §5.4): the top-level ``model`` is always
``hailuo`` and the sub-model (``t2v-01``, ``i2v-01``, ``s2v-01``, ``v2.3``…) goes in ``input.model``;
PiAPI's CLI defaults it to ``v2.3``. ``prompt`` is at most 2000 characters; t2v models take no
``image_url``, i2v and s2v need one. ``duration`` (6 or 10) and ``resolution`` (768 or 1080) come
from third-party code only, so they are checked no further than that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import DurationDriver, ImageInput, TaskInput, TaskSpec
from piapi_mcp.models import OutputRef, url_output, walk_outputs


def parse_outputs(output: Mapping[str, Any]) -> list[OutputRef]:
    """The video first (``video_url``, else ``download_url``), then its cover as an image.

    Hailuo lists the cover before the video, and its documented example gives all three the same
    URL: the generic walk would take the video for a cover.
    """
    video = url_output(output.get("video_url"), "video") or url_output(output.get("download_url"), "video")
    cover = url_output(output.get("cover_url"), "image")
    found = [item for item in (video, cover) if item is not None]
    if video is not None and cover is not None and cover.url == video.url:
        found = [video]
    return found or walk_outputs(output)


class HailuoVideoInput(TaskInput):
    """The ``input`` of a Hailuo ``video_generation`` task (extra keys pass through: the docs are thin)."""

    model_config = ConfigDict(extra="allow")

    prompt: str | None = Field(
        default=None,
        max_length=2000,
        description="What happens in the video (at most 2000 characters); needed unless an image is given.",
    )
    image_url: ImageInput | None = Field(
        default=None,
        description="The first frame (JPG/PNG, at most 10 MB, 300 to 4096 px) for image-to-video sub-models.",
    )
    model: str | None = Field(
        default=None,
        description=(
            "Hailuo sub-model: v2.3 (the default), v2.3-fast, t2v-01, t2v-01-director, i2v-01, "
            "i2v-01-live, i2v-01-director, s2v-01, t2v-02, i2v-02."
        ),
    )
    expand_prompt: bool = Field(default=False, description="Let Hailuo rewrite the prompt.")
    duration: Literal[6, 10] | None = Field(
        default=None, description="Seconds (02 and v2.3 models): 6 or 10."
    )
    resolution: Literal[768, 1080] | None = Field(
        default=None, description="Vertical resolution (02 and v2.3 models): 768 or 1080; 1080 only with 6 s."
    )


HAILUO_VIDEO = TaskSpec(
    model="hailuo",
    task_type="video_generation",
    input=HailuoVideoInput,
    summary="Make a short video from a text or a first frame (Hailuo).",
    output="video",
    # Not documented for Hailuo; video tasks take minutes (Kling 3.0 about 2 min in the notes).
    typical_seconds=180.0,
    example={"prompt": "A paper boat drifts down a rainy street, slow camera pan", "duration": 6},
    # Run time grows with the video's length and height (the typical one: 6 s at 768 lines).
    duration_drivers=(DurationDriver(("duration",), 6), DurationDriver(("resolution",), 768)),
    # PiAPI reports a running Hailuo task's progress in ``output.percent``.
    progress_field="percent",
    noun="video",
    defaults={"model": "v2.3"},
    # The response example of https://piapi.ai/docs/hailuo-api/generate-video (the schema's filled
    # example; the get-task page only shows a pending skeleton).
    output_example={
        "percent": 0,
        "cover_url": "http://example.com",
        "video_url": "http://example.com",
        "download_url": "http://example.com",
        "desc": "string",
        "prompt_img_url": "string",
        "status": 0,
        "user_origin_prompt": True,
        "width": 0,
        "height": 0,
        "model_id": "string",
        "message": "string",
    },
    parse_outputs=parse_outputs,
)

SPECS = (HAILUO_VIDEO,)
