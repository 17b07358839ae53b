"""WanX (``Qubico/wanx``: Wan 2.1 and 2.2) and Wan 2.6 (``Wan``): video.

Facts from ``piapi-catalog.md`` §5.6. Wan 2.1 base models are documented (480p, 85 frames;
``aspect_ratio`` 16:9 or 9:16; US$0.12 for 1.3b, US$0.28 for 14b); the LoRA, keyframe, camera and
Wan 2.2 task types and Wan 2.6 have PiAPI's Postman field names only, so their inputs pass extra
keys through. Keyframe uses Postman's ``start_image``/``end_image`` (contradiction 6). WanX
answers ``video_url``; Wan 2.6's output was not captured: PiAPI's newer proxies answer ``video``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from piapi_mcp.catalog._spec import ImageInput, TaskInput, TaskSpec

Prompt = Annotated[str, Field(min_length=1, max_length=4000, description="What happens in the video.")]
NegativePrompt = Annotated[str | None, Field(max_length=4000, description="What to keep out.")]
LoraSettings = Annotated[
    list[dict[str, Any]] | None,
    Field(
        max_length=4, description="[{lora_type, lora_strength}]; types on PiAPI's 'LoRA Types for Wanx' page."
    ),
]


class WanxTextInput(TaskInput):
    """The ``input`` of a WanX text-to-video task."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    negative_prompt: NegativePrompt = None
    aspect_ratio: Literal["16:9", "9:16"] | None = None
    lora_settings: LoraSettings = None


class WanxImageInput(WanxTextInput):
    """The ``input`` of a WanX image-to-video task."""

    image: ImageInput = Field(description="The first frame (URL or base64).")
    control_camera_settings: list[Any] | None = Field(
        default=None, max_length=16, description="Camera moves."
    )


class WanxKeyframeInput(TaskInput):
    """The ``input`` of ``img2video-14b-keyframe``: a video from a start to an end frame."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    start_image: ImageInput
    end_image: ImageInput


class Wan26Input(TaskInput):
    """The ``input`` of a Wan 2.6 task (PiAPI's Postman field names; extra keys pass)."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    negative_prompt: NegativePrompt = None
    duration: int | None = Field(default=None, ge=1, le=20)
    resolution: str | None = Field(default=None, max_length=16)
    aspect_ratio: str | None = Field(default=None, max_length=8)
    audio: bool | None = Field(default=None, description="Generate sound too.")
    prompt_extend: bool | None = None
    seed: int | None = None


class Wan26ImageInput(Wan26Input):
    """The ``input`` of ``wan26-img2video``."""

    image: ImageInput


_T2V = {"prompt": "a red kite over a beach at sunset", "aspect_ratio": "16:9"}
_I2V = {"prompt": "the kite climbs into the wind", "image": "https://example.com/kite.png"}
_LORA = [{"lora_type": "ghibli", "lora_strength": 1}]


def _wanx(
    task_type: str, input: type[BaseModel], summary: str, example: dict[str, Any], price: float | None
) -> TaskSpec:
    return TaskSpec(
        model="Qubico/wanx",
        task_type=task_type,
        input=input,
        summary=summary,
        output="video",
        typical_seconds=300.0,  # not documented; 85 frames at 30 steps take minutes
        example=example,
        noun="video",
        price_usd=price,
    )


WANX_SPECS = (
    _wanx("txt2video-1.3b", WanxTextInput, "Make a 480p video from a text (Wan 2.1 1.3B).", _T2V, 0.12),
    _wanx("txt2video-14b", WanxTextInput, "Make a 480p video from a text (Wan 2.1 14B).", _T2V, 0.28),
    _wanx("img2video-14b", WanxImageInput, "Animate a picture into a 480p video (Wan 2.1 14B).", _I2V, 0.28),
    _wanx(
        "txt2video-14b-lora",
        WanxTextInput,
        "Make a video in a LoRA style (Wan 2.1 14B).",
        {**_T2V, "lora_settings": _LORA},
        None,
    ),
    _wanx(
        "img2video-14b-lora",
        WanxImageInput,
        "Animate a picture in a LoRA style (Wan 2.1 14B).",
        {**_I2V, "lora_settings": _LORA},
        None,
    ),
    _wanx(
        "img2video-14b-keyframe",
        WanxKeyframeInput,
        "Make a video from a start frame to an end frame (Wan 2.1 14B).",
        {
            "prompt": "day turns to night",
            "start_image": "https://example.com/a.png",
            "end_image": "https://example.com/b.png",
        },
        None,
    ),
    _wanx(
        "img2video-14b-control-camera",
        WanxImageInput,
        "Animate a picture with camera moves (Wan 2.1 14B).",
        _I2V,
        None,
    ),
    _wanx(
        "wan22-txt2video-14b",
        WanxTextInput,
        "Make a video from a text (Wan 2.2 14B).",
        {"prompt": _T2V["prompt"]},
        None,
    ),
    _wanx("wan22-img2video-14b", WanxImageInput, "Animate a picture (Wan 2.2 14B).", _I2V, None),
)

#: Not captured for Wan 2.6: the ``video`` URL PiAPI's newer proxies answer with.
_VIDEO_OUTPUT = {"video": "https://img.theapi.app/ephemeral/wan26.mp4"}
WAN26_TEXT = TaskSpec(
    model="Wan",
    task_type="wan26-txt2video",
    input=Wan26Input,
    summary="Make a video from a text, with sound if asked (Wan 2.6).",
    output="video",
    typical_seconds=300.0,
    example={"prompt": "a red kite over a beach at sunset", "duration": 5, "aspect_ratio": "16:9"},
    noun="video",
    output_example=_VIDEO_OUTPUT,
)
WAN26_IMAGE = TaskSpec(
    model="Wan",
    task_type="wan26-img2video",
    input=Wan26ImageInput,
    summary="Animate a picture into a video, with sound if asked (Wan 2.6).",
    output="video",
    typical_seconds=300.0,
    example={
        "prompt": "the kite climbs into the wind",
        "image": "https://example.com/kite.png",
        "duration": 5,
    },
    noun="video",
    output_example=_VIDEO_OUTPUT,
)

SPECS = (*WANX_SPECS, WAN26_TEXT, WAN26_IMAGE)
