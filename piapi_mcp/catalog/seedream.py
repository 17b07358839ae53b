"""Seedream (``seedream``): Seedream 5 lite and pro, each also as a "less restriction" variant.

Facts from PiAPI's Seedream 5 Lite page (https://piapi.ai/docs/seedream-api/seedream-5-lite):
``prompt``; ``image_urls`` (at most 10 pictures, for image-to-image); ``size`` 2K (default) or 3K
(3K costs 1.5 times); ``aspect_ratio`` one of 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, 4:5, 5:4;
``output_format`` png (default) or jpeg; $0.028 per 2K image (consume 280,000). PiAPI's CLI adds
pro (sizes 1K, the default, or 2K; multi-image inputs ignored) and the less-restriction variants
(same engine and schema, a more permissive review, +25 % price). The completed output is not
published: it is taken to be the ``image_urls`` list PiAPI's other proxied image model (Gemini)
answers with, on the same host.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from piapi_mcp.catalog._spec import MEDIA_FORMS, ImageInput, TaskInput, TaskSpec
from piapi_mcp.catalog.gemini import GEMINI_OUTPUT

MODEL: Final = "seedream"
#: The less-restriction variants' surcharge (PiAPI's CLI).
LESS_RESTRICTION_FACTOR: Final = 1.25
LITE_PRICE_USD: Final = 0.028

AspectRatio = Literal["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4"]


class _SeedreamInput(TaskInput):
    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=4000, pattern=r"\S", description="What the picture shows.")
    aspect_ratio: AspectRatio | None = Field(default=None, description="Aspect ratio of the picture.")
    output_format: Literal["png", "jpeg"] | None = Field(default=None, description="png (default) or jpeg.")


class SeedreamLiteInput(_SeedreamInput):
    """The ``input`` of a ``seedream-5-lite`` task: text-to-image, or image-to-image from ``image_urls``."""

    image_urls: list[ImageInput] | None = Field(
        default=None,
        min_length=1,
        max_length=10,
        description=f"Up to 10 pictures to draw from, each {MEDIA_FORMS}.",
    )
    size: Literal["2K", "3K"] | None = Field(
        default=None, description="2K (default) or 3K (1.5 times the price)."
    )


class SeedreamProInput(_SeedreamInput):
    """The ``input`` of a ``seedream-5-pro`` task (text-to-image)."""

    size: Literal["1K", "2K"] | None = Field(default=None, description="1K (default) or 2K.")


def _spec(task_type: str, model_input: type[BaseModel], summary: str, price: float | None) -> TaskSpec:
    return TaskSpec(
        model=MODEL,
        task_type=task_type,
        input=model_input,
        summary=summary,
        output="image",
        # Not documented; a proxied image model (Gemini's siblings answer in tens of seconds).
        typical_seconds=30.0,
        example={"prompt": "A golden retriever in a field of sunflowers at sunset", "aspect_ratio": "16:9"},
        noun="image",
        output_example=GEMINI_OUTPUT,
        price_usd=price,
    )


SEEDREAM_LITE = _spec(
    "seedream-5-lite",
    SeedreamLiteInput,
    "Create or restyle a picture from a text, 2K or 3K (Seedream 5 lite).",
    LITE_PRICE_USD,
)
SEEDREAM_PRO = _spec(
    "seedream-5-pro", SeedreamProInput, "Create a picture from a text (Seedream 5 pro).", None
)
SEEDREAM_LITE_LESS_RESTRICTION = _spec(
    "seedream-5-lite-less-restriction",
    SeedreamLiteInput,
    "Seedream 5 lite with a more permissive content review (+25 %).",
    round(LITE_PRICE_USD * LESS_RESTRICTION_FACTOR, 6),
)
SEEDREAM_PRO_LESS_RESTRICTION = _spec(
    "seedream-5-pro-less-restriction",
    SeedreamProInput,
    "Seedream 5 pro with a more permissive content review (+25 %).",
    None,
)

SPECS = (SEEDREAM_LITE, SEEDREAM_PRO, SEEDREAM_LITE_LESS_RESTRICTION, SEEDREAM_PRO_LESS_RESTRICTION)
