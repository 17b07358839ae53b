"""Hunyuan Video (``Qubico/hunyuan``): text-to-video (normal, fast, LoRA) and image-to-video.

Facts from Qubico's sister docs and PiAPI's MCP server (``piapi-catalog.md`` §5.7): ``prompt``
required, at most 1000 characters; ``aspect_ratio`` 16:9, 9:16, 1:1 or 4:3; image-to-video needs
``image`` (JPEG/PNG/WebP); LoRA ``lora_settings`` strengths 0 to 2. "concat" moves more freely,
"replace" sticks to the image. PiAPI's MCP server waits up to 900 s (600 s fast). Output
``video_url``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from piapi_mcp.catalog._spec import ImageInput, TaskInput, TaskSpec

Prompt = Annotated[
    str, Field(min_length=1, max_length=1000, description="What happens (at most 1000 characters).")
]
AspectRatio = Literal["16:9", "9:16", "1:1", "4:3"]


class HunyuanTextInput(TaskInput):
    """The ``input`` of a Hunyuan text-to-video task."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    aspect_ratio: AspectRatio | None = None
    negative_prompt: str | None = Field(default=None, max_length=1000)
    lora_settings: list[dict[str, Any]] | None = Field(
        default=None, max_length=4, description="txt2video-lora: [{lora_type, lora_strength 0-2}]."
    )


class HunyuanImageInput(TaskInput):
    """The ``input`` of a Hunyuan image-to-video task."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    image: ImageInput = Field(description="The picture to animate (JPEG, PNG or WebP).")
    aspect_ratio: AspectRatio | None = None


def _hunyuan(
    task_type: str, input: type[BaseModel], summary: str, seconds: float, example: dict[str, Any]
) -> TaskSpec:
    return TaskSpec(
        model="Qubico/hunyuan",
        task_type=task_type,
        input=input,
        summary=summary,
        output="video",
        typical_seconds=seconds,
        example=example,
        noun="video",
    )


_T2V = {"prompt": "a cat walks on the grass, realistic style", "aspect_ratio": "16:9"}
_I2V = {"prompt": "the cat yawns", "image": "https://example.com/cat.png"}

SPECS = (
    # Not documented; PiAPI's MCP server allows 900 s (600 s for fast) before giving up.
    _hunyuan("txt2video", HunyuanTextInput, "Make a video from a text (Hunyuan).", 450.0, _T2V),
    _hunyuan("fast-txt2video", HunyuanTextInput, "Make a video from a text, faster (Hunyuan).", 300.0, _T2V),
    _hunyuan(
        "txt2video-lora",
        HunyuanTextInput,
        "Make a video from a text in a LoRA style (Hunyuan).",
        450.0,
        {**_T2V, "lora_settings": [{"lora_type": "steamboat-willie", "lora_strength": 1}]},
    ),
    _hunyuan(
        "img2video-concat", HunyuanImageInput, "Animate a picture, moving freely (Hunyuan).", 450.0, _I2V
    ),
    _hunyuan(
        "img2video-replace",
        HunyuanImageInput,
        "Animate a picture, staying close to it (Hunyuan).",
        450.0,
        _I2V,
    ),
)
