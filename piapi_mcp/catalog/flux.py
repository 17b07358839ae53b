"""Flux (``Qubico/flux1-dev``, ``Qubico/flux1-schnell``, ``Qubico/flux1-dev-advanced``): image tasks.

Facts from PiAPI's Flux pages (see ``piapi-catalog.md`` §5.1): Kontext takes ``prompt`` and
``image``, ``steps`` at most 40, ``seed`` -1 for random; its documented example ran 1 s queued plus
31 s. Text-to-image takes ``width``/``height`` (their product at most 1,048,576; image-to-image
keeps its image's size), image-to-image ``image`` and ``denoise`` (default 0.7, 0 < x ≤ 1), both
``negative_prompt`` and ``guidance_scale`` (1.5 to 5). PiAPI publishes no range for their
``steps``; Kontext's documented maximum (40) is used, and PiAPI's own default when it is left out.
Fields PiAPI documents thinly (``seed``, ``batch_size``) pass through as extra keys of ``run_task``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from piapi_mcp.catalog._spec import MEDIA_FORMS, ImageInput, TaskSpec, ToolInfo, upscale_images

KONTEXT_MODEL = "Qubico/flux1-dev-advanced"
KONTEXT_TASK_TYPE = "kontext"
FLUX_DEV_MODEL = "Qubico/flux1-dev"
#: PiAPI's text-to-image rule: width times height must not exceed this.
MAX_PIXELS: Final = 1_048_576

Width = Annotated[
    int, Field(ge=128, le=2048, description="Output width in pixels; width x height <= 1048576.")
]
Height = Annotated[int, Field(ge=128, le=2048, description="Output height in pixels.")]
Steps = Annotated[int, Field(ge=1, le=40, description="Diffusion steps; more is slower and finer.")]


class KontextInput(BaseModel):
    """The ``input`` of a PiAPI Flux Kontext task (model ``Qubico/flux1-dev-advanced``)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        min_length=1,
        max_length=4000,
        pattern=r"\S",
        description=(
            "What to change, in plain words ('make the sky purple'); the edit, not the whole picture."
        ),
    )
    image: ImageInput = Field(
        min_length=1,
        max_length=14_500_000,
        pattern=r"\S",
        description=f"The picture to edit (PNG, JPEG or WebP, at most 10 MB): {MEDIA_FORMS}.",
    )
    width: int = Field(default=1024, ge=128, le=2048, description="Output width in pixels.")
    height: int = Field(default=1024, ge=128, le=2048, description="Output height in pixels.")
    steps: Steps = 28
    seed: int = Field(default=-1, ge=-1, le=2**31 - 1, description="Random seed; -1 picks one.")


KONTEXT = TaskSpec(
    model=KONTEXT_MODEL,
    task_type=KONTEXT_TASK_TYPE,
    input=KontextInput,
    summary="Edit a picture from a plain-language instruction (Flux Kontext).",
    output="image",
    # PiAPI's documented Kontext example ran 32.7 s from creation to end.
    typical_seconds=32.7,
    example={"prompt": "make the sky purple", "image": "https://example.com/photo.png"},
    noun="edit",
    tool=ToolInfo(
        name="kontext_edit",
        title="Edit an image (Flux Kontext)",
        description=(
            "Edit a picture from a plain-language instruction with PiAPI's Flux Kontext "
            '("make the sky purple", "remove the car"). Paid; about 30 s.'
        ),
    ),
    # The completed example of https://piapi.ai/docs/flux-api/kontext (page modified 2025-06-30).
    output_example={
        "image_base64": "",
        "image_url": "https://img.theapi.app/temp/10f0a646-6155-4938-bf50-76934c953e9c.png",
    },
    # The same example's usage: consume 200,000 units (piapi-api.md §2.2).
    price_usd=0.02,
    follow_ups=upscale_images,
)

# --- Flux dev: text-to-image, image-to-image ------------------------------------------------------

Prompt = Annotated[
    str,
    Field(min_length=1, max_length=4000, pattern=r"\S", description="What the picture shows, in words."),
]
NegativePrompt = Annotated[
    str | None, Field(default=None, max_length=4000, description="What to keep out of the picture.")
]
GuidanceScale = Annotated[
    float | None, Field(default=None, ge=1.5, le=5, description="Prompt adherence over realism.")
]
Denoise = Annotated[
    float, Field(gt=0, le=1, description="How far to move from the image: near 0 keeps it, 1 redraws it.")
]


def _check_area(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise PydanticCustomError(
            "pixel_area",
            "`width` × `height` must be at most {limit} pixels (got {width} × {height})",
            {"limit": f"{MAX_PIXELS:,}", "width": width, "height": height},
        )


class FluxTextToImageInput(BaseModel):
    """The ``input`` of a Flux text-to-image task (``txt2img``)."""

    # PiAPI documents these tasks thinly: keys not declared here pass through to PiAPI.
    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    negative_prompt: NegativePrompt = None
    width: Width = 1024
    height: Height = 1024
    guidance_scale: GuidanceScale = None
    steps: Steps | None = None

    @model_validator(mode="after")
    def _area(self) -> FluxTextToImageInput:
        _check_area(self.width, self.height)
        return self


class FluxImageToImageInput(BaseModel):
    """The ``input`` of a Flux image-to-image task (``img2img``): the picture's size is kept."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    image: ImageInput = Field(
        min_length=1,
        max_length=14_500_000,
        pattern=r"\S",
        description=f"The picture to start from (PNG, JPEG or WebP, at most 10 MB): {MEDIA_FORMS}.",
    )
    denoise: Denoise = 0.7
    negative_prompt: NegativePrompt = None
    guidance_scale: GuidanceScale = None
    steps: Steps | None = None


class FluxGenerateArguments(BaseModel):
    """``flux_generate``'s arguments: text-to-image, or image-to-image when ``image`` is given."""

    model_config = ConfigDict(extra="forbid")

    prompt: Prompt
    image: ImageInput | None = Field(
        default=None,
        min_length=1,
        max_length=14_500_000,
        pattern=r"\S",
        description=f"A picture to start from (image-to-image): {MEDIA_FORMS}.",
    )
    negative_prompt: NegativePrompt = None
    width: Width = 1024
    height: Height = 1024
    denoise: Denoise = 0.7

    @model_validator(mode="after")
    def _fits(self) -> FluxGenerateArguments:
        # A tool call passes every argument, defaults included: a value other than the default was asked.
        changed = {
            name for name, info in type(self).model_fields.items() if getattr(self, name) != info.default
        }
        if self.image is None:
            if "denoise" in changed:
                raise PydanticCustomError("image_only", "`denoise` applies only with an `image`")
            _check_area(self.width, self.height)
        elif changed & {"width", "height"}:
            raise PydanticCustomError(
                "text_only", "`width` and `height` apply only without an `image` (it keeps its size)"
            )
        return self


def _route_generate(arguments: BaseModel) -> tuple[TaskSpec, BaseModel]:
    """Image-to-image when an image is given, else text-to-image; each gets the fields it takes."""
    spec = FLUX_TXT2IMG if getattr(arguments, "image", None) is None else FLUX_IMG2IMG
    given: dict[str, Any] = arguments.model_dump(exclude_none=True)
    return spec, spec.input.model_validate({k: v for k, v in given.items() if k in spec.input.model_fields})


FLUX_IMG2IMG = TaskSpec(
    model=FLUX_DEV_MODEL,
    task_type="img2img",
    input=FluxImageToImageInput,
    summary="Redraw a picture guided by a text description (Flux dev image-to-image).",
    output="image",
    # No documented run time; Kontext, on the same Flux dev weights, ran 32.7 s.
    typical_seconds=30.0,
    example={"prompt": "a watercolour painting", "image": "https://example.com/photo.png", "denoise": 0.7},
    noun="image",
    follow_ups=upscale_images,
)

FLUX_TXT2IMG = TaskSpec(
    model=FLUX_DEV_MODEL,
    task_type="txt2img",
    input=FluxTextToImageInput,
    summary="Create a picture from a text description (Flux dev text-to-image).",
    output="image",
    typical_seconds=30.0,
    example={"prompt": "a lighthouse at dawn, watercolour", "width": 1024, "height": 768},
    noun="image",
    tool=ToolInfo(
        name="flux_generate",
        title="Generate an image (Flux)",
        description=(
            "Create a picture from a text description with PiAPI's Flux dev; with an image, redraw that "
            "picture guided by the text. Paid; about 30 s."
        ),
        input=FluxGenerateArguments,
        route=_route_generate,
    ),
    follow_ups=upscale_images,
)

SPECS = (KONTEXT, FLUX_TXT2IMG, FLUX_IMG2IMG)
