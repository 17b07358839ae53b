"""Z-Image (``Qubico/z-image``): text-to-image.

Facts from ``piapi-catalog.md`` §5.9: PiAPI's Postman collection names ``prompt``,
``negative_prompt``, ``width``, ``height``, ``batch_size``, ``seed`` and ``flow_shift``; nothing else
is published, so the bounds are Flux's (same Qubico backend), the output the Qubico image shape,
and extra keys pass through.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import TaskInput, TaskSpec
from piapi_mcp.catalog.flux import FLUX_OUTPUT, BatchSize, Height, NegativePrompt, Prompt, Width


class ZImageInput(TaskInput):
    """The ``input`` of a Z-Image ``txt2img`` task."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    negative_prompt: NegativePrompt = None
    width: Width | None = None
    height: Height | None = None
    batch_size: BatchSize = None
    seed: int | None = Field(
        default=None, ge=-1, le=2**31 - 1, description="Random seed; -1 or none picks one."
    )
    flow_shift: float | None = Field(default=None, gt=0, le=20, description="Sampler flow shift (advanced).")


Z_IMAGE_TXT2IMG = TaskSpec(
    model="Qubico/z-image",
    task_type="txt2img",
    input=ZImageInput,
    summary="Create a picture from a text, fast (Z-Image).",
    output="image",
    # Not documented; Z-Image Turbo is a few-step model, like Flux schnell.
    typical_seconds=10.0,
    example={"prompt": "a bowl of ramen, top view, studio photo", "width": 1024, "height": 1024},
    noun="image",
    # Not captured: the Qubico image shape Flux documents.
    output_example=FLUX_OUTPUT,
)

SPECS = (Z_IMAGE_TXT2IMG,)
