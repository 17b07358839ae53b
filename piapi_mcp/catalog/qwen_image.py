"""Qwen Image (``Qubico/qwen-image``): text-to-image and image edit (Qwen edit 2509).

Facts from ``piapi-catalog.md`` §5.9: PiAPI's Postman collection names ``prompt``, ``width``,
``height``, ``steps``, ``seed``, ``flow_shift`` (``txt2img``) and ``prompt``, ``negative_prompt``,
``image1``, ``image2``, ``steps``, ``seed``, ``flow_shift`` (``image-edit``). No ranges, price or
output are published: the output is taken to be the Qubico image shape (``image_url``), the bounds
are Flux's (same Qubico backend), and extra keys pass through.
"""

from __future__ import annotations

from typing import Final

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import MEDIA_FORMS, ImageInput, TaskInput, TaskSpec
from piapi_mcp.catalog.flux import FLUX_OUTPUT, Height, NegativePrompt, Prompt, Width

MODEL: Final = "Qubico/qwen-image"
Seed = Field(default=None, ge=-1, le=2**31 - 1, description="Random seed; -1 or none picks one.")
FlowShift = Field(default=None, gt=0, le=20, description="Sampler flow shift (advanced).")
QwenSteps = Field(default=None, ge=1, le=100, description="Diffusion steps.")


class QwenTextToImageInput(TaskInput):
    """The ``input`` of a Qwen Image ``txt2img`` task."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    width: Width | None = None
    height: Height | None = None
    steps: int | None = QwenSteps
    seed: int | None = Seed
    flow_shift: float | None = FlowShift


class QwenImageEditInput(TaskInput):
    """The ``input`` of a Qwen Image ``image-edit`` task: one picture edited, a second as reference."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    image1: ImageInput = Field(min_length=1, description=f"The picture to edit: {MEDIA_FORMS}.")
    image2: ImageInput | None = Field(
        default=None, min_length=1, description=f"A second picture to draw from: {MEDIA_FORMS}."
    )
    negative_prompt: NegativePrompt = None
    steps: int | None = QwenSteps
    seed: int | None = Seed
    flow_shift: float | None = FlowShift


#: Not captured: the Qubico image shape Flux documents (``piapi-catalog.json``: "assumed Qubico image shape").
QWEN_OUTPUT: Final = FLUX_OUTPUT

QWEN_TXT2IMG = TaskSpec(
    model=MODEL,
    task_type="txt2img",
    input=QwenTextToImageInput,
    summary="Create a picture from a text, good at lettering (Qwen Image).",
    output="image",
    # Not documented; a 20B image model on Qubico's backend, like Flux dev (about 30 s).
    typical_seconds=30.0,
    example={"prompt": 'a cafe chalkboard that says "Fresh Bread"', "width": 1024, "height": 1024},
    noun="image",
    output_example=QWEN_OUTPUT,
)

QWEN_IMAGE_EDIT = TaskSpec(
    model=MODEL,
    task_type="image-edit",
    input=QwenImageEditInput,
    summary="Edit a picture from a plain-language instruction (Qwen Image Edit).",
    output="image",
    typical_seconds=30.0,
    example={"prompt": "make it snow", "image1": "https://example.com/photo.png"},
    noun="edit",
    output_example=QWEN_OUTPUT,
)

SPECS = (QWEN_TXT2IMG, QWEN_IMAGE_EDIT)
