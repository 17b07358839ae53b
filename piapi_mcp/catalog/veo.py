"""Veo (``veo3``: ``veo3-video``, ``veo3-video-fast``; ``veo3.1``: ``veo3.1-video``, ``veo3.1-video-fast``).

Facts from PiAPI's Veo pages (``veo3-api/image-to-video``, ``veo31-api/text-to-video``) and Postman
(``piapi-catalog.md`` §5.8): ``prompt``, ``negative_prompt``, ``aspect_ratio`` (``auto`` with an
image), ``duration`` written as a string (``"8s"``), ``resolution`` 720p/1080p, ``generate_audio``
and ``image_url``; 3.1 adds ``tail_image_url`` and (not fast) ``reference_image_urls``. Prices per
second: US$0.12 (0.24 with audio), fast US$0.06 (0.09 with audio); the specs' prices are for the
documented 8 s without audio. The output shape was not captured: PiAPI's newer proxies answer
``video``, and the parser is the generic walk.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from piapi_mcp.catalog._spec import ImageInput, TaskInput, TaskSpec


class VeoInput(TaskInput):
    """The ``input`` of a Veo 3 task (extra keys pass)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=4000, description="What happens, dialogue in quotes.")
    negative_prompt: str | None = Field(default=None, max_length=4000)
    aspect_ratio: str | None = Field(
        default=None, max_length=8, description="16:9, 9:16, or auto with an image."
    )
    duration: str | None = Field(default=None, pattern=r"^\d{1,2}s$", description='Seconds as "8s".')
    resolution: str | None = Field(default=None, max_length=8, description="720p or 1080p.")
    generate_audio: bool | None = Field(default=None, description="Sound and speech (doubles the price).")
    image_url: ImageInput | None = Field(default=None, description="The first frame.")


class Veo31Input(VeoInput):
    """The ``input`` of a Veo 3.1 task: also an end frame and reference images."""

    tail_image_url: ImageInput | None = Field(default=None, description="The last frame.")
    reference_image_urls: list[ImageInput] | None = Field(
        default=None, max_length=3, description="Not on fast."
    )


_OUTPUT = {"video": "https://img.theapi.app/ephemeral/veo.mp4"}
_EXAMPLE = {
    "prompt": "a cartographer pores over an old sea chart by lamplight",
    "duration": "8s",
    "resolution": "720p",
}


def _veo(model: str, task_type: str, input: type[BaseModel], summary: str, per_second: float) -> TaskSpec:
    return TaskSpec(
        model=model,
        task_type=task_type,
        input=input,
        summary=summary,
        output="video",
        typical_seconds=240.0,  # not documented for PiAPI; Veo runs take minutes
        example={**_EXAMPLE, "generate_audio": False},
        noun="video",
        output_example=_OUTPUT,
        price_usd=round(8 * per_second, 2),
    )


SPECS = (
    _veo(
        "veo3", "veo3-video", VeoInput, "Make a video with sound from a text or a first frame (Veo 3).", 0.12
    ),
    _veo("veo3", "veo3-video-fast", VeoInput, "Make a video faster and cheaper (Veo 3 fast).", 0.06),
    _veo(
        "veo3.1",
        "veo3.1-video",
        Veo31Input,
        "Make a video from a text, first and last frames (Veo 3.1).",
        0.12,
    ),
    _veo("veo3.1", "veo3.1-video-fast", Veo31Input, "Make a video faster and cheaper (Veo 3.1 fast).", 0.06),
)
