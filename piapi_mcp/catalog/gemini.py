"""Gemini image (``gemini``): Gemini 2.5 Flash Image, Nano Banana Pro and Nano Banana 2.

Facts from ``piapi-catalog.md`` §5.9: the fields are those of PiAPI's Postman collection
(``gemini-2.5-flash-image``: ``prompt``, ``image_urls[]``, ``num_images``, ``aspect_ratio``,
``output_format``; ``nano-banana-pro``: ``prompt``, ``aspect_ratio``, ``resolution``, ``output_format``,
``safety_level``); ``nano-banana-2`` has no captured fields beyond the docs index's "text-to-image and
image-to-image with flexible resolution and aspect ratio". No ranges are published, so only the
prompt is required and extra keys pass through. A flash-image example consumed 300,000 units ($0.03).
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from piapi_mcp.catalog._spec import MEDIA_FORMS, ImageInput, TaskInput, TaskSpec

MODEL: Final = "gemini"


def _prompt() -> Any:
    return Field(
        min_length=1, max_length=10_000, pattern=r"\S", description="What to draw or change, in words."
    )


def _images() -> Any:
    return Field(
        default=None,
        min_length=1,
        max_length=14,
        description=f"Pictures to edit or draw from, each {MEDIA_FORMS}.",
    )


AspectRatio = Field(default=None, max_length=10, description='Aspect ratio, e.g. "1:1", "16:9", "9:16".')
OutputFormat = Field(default=None, max_length=10, description='"png" or "jpeg".')
Resolution = Field(default=None, max_length=10, description='Output resolution, e.g. "1K", "2K", "4K".')


class GeminiFlashImageInput(TaskInput):
    """The ``input`` of a ``gemini-2.5-flash-image`` task: text-to-image, or an edit of ``image_urls``."""

    model_config = ConfigDict(extra="allow")

    prompt: str = _prompt()
    image_urls: list[ImageInput] | None = _images()
    num_images: int | None = Field(default=None, ge=1, le=4, description="Images to make.")
    aspect_ratio: str | None = AspectRatio
    output_format: str | None = OutputFormat


class NanoBananaProInput(TaskInput):
    """The ``input`` of a ``nano-banana-pro`` task."""

    model_config = ConfigDict(extra="allow")

    prompt: str = _prompt()
    aspect_ratio: str | None = AspectRatio
    resolution: str | None = Resolution
    output_format: str | None = OutputFormat
    safety_level: str | None = Field(default=None, max_length=20, description="Content filter strictness.")


class NanoBanana2Input(TaskInput):
    """The ``input`` of a ``nano-banana-2`` task (fields not captured: the common ones of its siblings)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = _prompt()
    image_urls: list[ImageInput] | None = _images()
    aspect_ratio: str | None = AspectRatio
    resolution: str | None = Resolution
    output_format: str | None = OutputFormat


#: No completed Gemini example is published by PiAPI; a third-party capture shows ``output.image_urls``
#: on ``img.theapi.app/ephemeral`` (``piapi-catalog.md`` §5.9, ``piapi-api.md`` §5.3 hosts).
GEMINI_OUTPUT: Final = {
    "image_urls": ["https://img.theapi.app/ephemeral/4f0c2a8e-7d1b-4c3e-9a5f-6b2d8e1c0f3a.png"]
}


def _spec(task_type: str, model_input: type[BaseModel], summary: str, price: float | None) -> TaskSpec:
    return TaskSpec(
        model=MODEL,
        task_type=task_type,
        input=model_input,
        summary=summary,
        output="image",
        # Not documented; Google's image models answer in seconds, PiAPI's proxy adds its queue.
        typical_seconds=20.0,
        example={"prompt": "a cosy reading nook, warm afternoon light", "aspect_ratio": "16:9"},
        noun="image",
        output_example=GEMINI_OUTPUT,
        price_usd=price,
    )


GEMINI_FLASH_IMAGE = _spec(
    "gemini-2.5-flash-image",
    GeminiFlashImageInput,
    "Create or edit a picture from a text (Gemini 2.5 Flash Image, 'Nano Banana').",
    # A documented example consumed 300,000 units.
    0.03,
)
NANO_BANANA_PRO = _spec(
    "nano-banana-pro", NanoBananaProInput, "Create a picture from a text, up to 4K (Nano Banana Pro).", None
)
NANO_BANANA_2 = _spec(
    "nano-banana-2", NanoBanana2Input, "Create or edit a picture from a text (Nano Banana 2).", None
)

SPECS = (GEMINI_FLASH_IMAGE, NANO_BANANA_PRO, NANO_BANANA_2)
