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

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from piapi_mcp.catalog._spec import (
    MAX_MEDIA_ARGUMENT_CHARS,
    MEDIA_FORMS,
    MEDIA_FORMS_SHORT,
    SIZE_FOLLOWS_IMAGE,
    DurationDriver,
    ImageInput,
    SizeFromImage,
    TaskInput,
    TaskSpec,
    ToolInfo,
    upscale_images,
)

KONTEXT_MODEL = "Qubico/flux1-dev-advanced"
KONTEXT_TASK_TYPE = "kontext"
FLUX_DEV_MODEL = "Qubico/flux1-dev"
FLUX_SCHNELL_MODEL = "Qubico/flux1-schnell"
#: PiAPI's text-to-image rule: width times height must not exceed this.
MAX_PIXELS: Final = 1_048_576

Width = Annotated[
    int, Field(ge=128, le=2048, description="Output width in pixels; width x height <= 1048576.")
]
Height = Annotated[int, Field(ge=128, le=2048, description="Output height in pixels.")]
Steps = Annotated[int, Field(ge=1, le=40, description="Diffusion steps; more is slower and finer.")]


class KontextInput(TaskInput):
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
        max_length=MAX_MEDIA_ARGUMENT_CHARS,
        pattern=r"\S",
        description=f"The picture to edit (PNG, JPEG, WebP; 10 MB at most): {MEDIA_FORMS_SHORT}[#n].",
    )
    width: int | None = Field(
        default=None, ge=128, le=2048, description=f"Output width in pixels; {SIZE_FOLLOWS_IMAGE}."
    )
    height: int | None = Field(
        default=None, ge=128, le=2048, description=f"Output height in pixels; {SIZE_FOLLOWS_IMAGE}."
    )
    steps: Steps = 28
    seed: int = Field(default=-1, ge=-1, le=2**31 - 1, description="Random seed; -1 picks one.")


#: Flux's diffusion time grows with the steps and the pixels made; typical durations are for 28 steps
#: (PiAPI's dev default) at 1024 x 1024. A task that sends no ``steps`` counts as the default.
FLUX_DURATION_DRIVERS: Final = (
    DurationDriver(("steps",), 28),
    DurationDriver(("width", "height"), 1024 * 1024),
)
#: Schnell's fixed few steps: only the pixels drive it.
FLUX_PIXELS_DRIVER: Final = (DurationDriver(("width", "height"), 1024 * 1024),)

KONTEXT = TaskSpec(
    model=KONTEXT_MODEL,
    task_type=KONTEXT_TASK_TYPE,
    input=KontextInput,
    summary="Edit a picture from a plain-language instruction (Flux Kontext).",
    output="image",
    # PiAPI's documented Kontext example ran 32.7 s from creation to end.
    typical_seconds=32.7,
    duration_drivers=FLUX_DURATION_DRIVERS,
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
    # PiAPI's height defaults to 1024 and its width is undocumented: 1024 x 1024 when the size is unknown.
    size_from_image=SizeFromImage(image="image", fallback=(1024, 1024)),
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


class FluxTextToImageInput(TaskInput):
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


class FluxImageToImageInput(TaskInput):
    """The ``input`` of a Flux image-to-image task (``img2img``): the picture's size is kept."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    image: ImageInput = Field(
        min_length=1,
        max_length=MAX_MEDIA_ARGUMENT_CHARS,
        pattern=r"\S",
        description=f"The picture to start from (PNG, JPEG, WebP; 10 MB at most): {MEDIA_FORMS_SHORT}[#n].",
    )
    denoise: Denoise = 0.7
    negative_prompt: NegativePrompt = None
    guidance_scale: GuidanceScale = None
    steps: Steps | None = None


class FluxGenerateArguments(TaskInput):
    """``flux_generate``'s arguments: text-to-image, or image-to-image when ``image`` is given."""

    model_config = ConfigDict(extra="forbid")

    prompt: Prompt
    image: ImageInput | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MEDIA_ARGUMENT_CHARS,
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
    duration_drivers=FLUX_DURATION_DRIVERS,
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

# --- Flux schnell and dev-advanced: text-to-image, image-to-image ----------------------------------

#: PiAPI's documented output of a Flux task (``image_url`` for one image, ``image_urls`` for several,
#: ``image_base64`` usually empty): the completed example of https://piapi.ai/docs/flux-api/kontext,
#: which the text-to-image and image-to-image pages describe with the same schema.
FLUX_OUTPUT: Final = KONTEXT.output_example
BatchSize = Annotated[
    int | None,
    Field(default=None, ge=1, le=4, description="Images to make (1 to 4, schnell only); each is paid."),
]


def _image_field(description: str) -> Any:
    """A required picture field, as Flux takes them (URL, local file, data: URI or earlier output)."""
    return Field(
        min_length=1,
        max_length=MAX_MEDIA_ARGUMENT_CHARS,
        pattern=r"\S",
        description=f"{description}: {MEDIA_FORMS}.",
    )


class FluxSchnellTextToImageInput(FluxTextToImageInput):
    """The ``input`` of a Flux schnell text-to-image task: dev's fields and ``batch_size``."""

    batch_size: BatchSize = None


class FluxSchnellImageToImageInput(FluxImageToImageInput):
    """The ``input`` of a Flux schnell image-to-image task: dev's fields and ``batch_size``."""

    batch_size: BatchSize = None


FLUX_SCHNELL_TXT2IMG = TaskSpec(
    model=FLUX_SCHNELL_MODEL,
    task_type="txt2img",
    input=FluxSchnellTextToImageInput,
    summary="Create a picture from a text description, fast and cheap (Flux schnell text-to-image).",
    output="image",
    # No documented run time; schnell is Flux's few-step model, several times faster than dev.
    typical_seconds=10.0,
    example={"prompt": "a paper crane on a desk, soft light", "width": 1024, "height": 1024, "batch_size": 2},
    duration_drivers=FLUX_PIXELS_DRIVER,
    noun="image",
    output_example=FLUX_OUTPUT,
    # piapi-api.md §5.3: about $0.002 per image (a schnell example consumed 20,000 units), times batch_size.
    price_usd=0.002,
)

FLUX_SCHNELL_IMG2IMG = TaskSpec(
    model=FLUX_SCHNELL_MODEL,
    task_type="img2img",
    input=FluxSchnellImageToImageInput,
    summary="Redraw a picture guided by a text description, fast and cheap (Flux schnell image-to-image).",
    output="image",
    typical_seconds=10.0,
    example={"prompt": "a pencil sketch", "image": "https://example.com/photo.png", "denoise": 0.6},
    noun="image",
    output_example=FLUX_OUTPUT,
    price_usd=0.002,
)

FLUX_ADVANCED_TXT2IMG = TaskSpec(
    model=KONTEXT_MODEL,
    task_type="txt2img",
    input=FluxTextToImageInput,
    summary="Create a picture from a text description (Flux dev-advanced text-to-image).",
    output="image",
    # No documented run time; Kontext, on the same model, ran 32.7 s.
    typical_seconds=30.0,
    example={"prompt": "a red fox in fresh snow, photograph", "width": 1024, "height": 768},
    duration_drivers=FLUX_DURATION_DRIVERS,
    noun="image",
    output_example=FLUX_OUTPUT,
)

FLUX_ADVANCED_IMG2IMG = TaskSpec(
    model=KONTEXT_MODEL,
    task_type="img2img",
    input=FluxImageToImageInput,
    summary="Redraw a picture guided by a text description (Flux dev-advanced image-to-image).",
    output="image",
    typical_seconds=30.0,
    example={"prompt": "an oil painting", "image": "https://example.com/photo.png", "denoise": 0.7},
    noun="image",
    output_example=FLUX_OUTPUT,
)

# --- Flux dev-advanced: LoRA, ControlNet, fill, redux ------------------------------------------------
# PiAPI's "Flux with LoRA and Controlnet" and "Redux Variation, Fill, Inpaint and Outpaint" pages
# (piapi-api.md §5.3): one LoRA at most, exactly one ControlNet. The LoRA and ControlNet names are
# described, not enumerated, since PiAPI adds to its lists.

LORA_TYPES: Final = (
    "anime, art, disney, furry, mjv6, realism, scenery, collage-artstyle, creepcute, cyberpunk-anime-style, "
    "deco-pulse, moebius-style, graphic-portrait, …"
)


class LoraSetting(TaskInput):
    """One LoRA of ``lora_settings``."""

    model_config = ConfigDict(extra="allow")

    lora_type: str = Field(min_length=1, max_length=200, description=f"The LoRA's name: {LORA_TYPES}")
    lora_strength: float | None = Field(default=None, ge=0, le=2, description="How strongly it applies.")


class ControlNetSetting(TaskInput):
    """The one ControlNet of ``control_net_settings``."""

    model_config = ConfigDict(extra="allow")

    control_type: str = Field(
        min_length=1, max_length=100, description="depth, soft_edge, canny or openpose."
    )
    # A nested field is not resolved like top-level media: PiAPI fetches this URL itself.
    control_image: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^https?://",
        description="The control picture, an http(s) URL.",
    )
    control_strength: float | None = Field(default=None, ge=0, le=1, description="How strongly it steers.")
    return_preprocessed_image: bool | None = Field(
        default=None, description="Also return the preprocessed control picture."
    )


OneLora = Annotated[
    list[LoraSetting], Field(min_length=1, max_length=1, description="Exactly one LoRA (PiAPI's capacity).")
]


class FluxLoraTextToImageInput(FluxTextToImageInput):
    """The ``input`` of a Flux ``txt2img-lora`` task: text-to-image in the style of one LoRA."""

    lora_settings: OneLora


class FluxLoraImageToImageInput(FluxImageToImageInput):
    """The ``input`` of a Flux ``img2img-lora`` task: image-to-image in the style of one LoRA."""

    lora_settings: OneLora


class FluxControlNetInput(TaskInput):
    """The ``input`` of a Flux ``controlnet-lora`` task: one ControlNet, optionally one LoRA."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    control_net_settings: list[ControlNetSetting] = Field(
        min_length=1, max_length=1, description="Exactly one ControlNet."
    )
    lora_settings: list[LoraSetting] | None = Field(
        default=None, max_length=1, description="At most one LoRA."
    )
    negative_prompt: NegativePrompt = None
    guidance_scale: GuidanceScale = None
    steps: Steps | None = None


class FluxInpaintInput(TaskInput):
    """The ``input`` of a Flux ``fill-inpaint`` task: the white area of the picture is redrawn."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    image: ImageInput = _image_field("The picture, with the area to redraw painted pure white")
    negative_prompt: NegativePrompt = None
    steps: Steps | None = None


class OutpaintSetting(TaskInput):
    """How far ``fill-outpaint`` extends the picture on each side, in pixels."""

    model_config = ConfigDict(extra="allow")

    setting_type: Literal["outpaint"] = "outpaint"
    outpaint_left: int | None = Field(default=None, ge=0, le=2048, description="Pixels added on the left.")
    outpaint_right: int | None = Field(default=None, ge=0, le=2048, description="Pixels added on the right.")
    outpaint_top: int | None = Field(default=None, ge=0, le=2048, description="Pixels added on top.")
    outpaint_bottom: int | None = Field(default=None, ge=0, le=2048, description="Pixels added below.")


class FluxOutpaintInput(TaskInput):
    """The ``input`` of a Flux ``fill-outpaint`` task (the added area under 1024 x 1024 px in total)."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    image: ImageInput = _image_field("The picture to extend")
    custom_settings: list[OutpaintSetting] = Field(
        min_length=1, max_length=1, description="One outpaint setting: the pixels to add on each side."
    )
    negative_prompt: NegativePrompt = None
    steps: Steps | None = None


class FluxReduxInput(TaskInput):
    """The ``input`` of a Flux ``redux-variation`` task: a variation of a picture."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt
    image: ImageInput = _image_field("The picture to make a variation of")
    width: Width | None = None
    height: Height | None = None
    steps: Steps | None = None

    @model_validator(mode="after")
    def _area(self) -> FluxReduxInput:
        if self.width is not None and self.height is not None:
            _check_area(self.width, self.height)
        return self


def _advanced(
    task_type: str, model_input: type[BaseModel], summary: str, example: dict[str, Any]
) -> TaskSpec:
    """A Flux dev-advanced image task (no documented run time or price: Kontext's 32.7 s as the guess)."""
    return TaskSpec(
        model=KONTEXT_MODEL,
        task_type=task_type,
        input=model_input,
        summary=summary,
        output="image",
        typical_seconds=30.0,
        example=example,
        noun="image",
        output_example=FLUX_OUTPUT,
    )


_LORA = [{"lora_type": "anime", "lora_strength": 1.0}]

FLUX_TXT2IMG_LORA = _advanced(
    "txt2img-lora",
    FluxLoraTextToImageInput,
    "Create a picture from a text description in the style of a LoRA (Flux dev-advanced).",
    {"prompt": "a girl reading under a cherry tree", "lora_settings": _LORA},
)
FLUX_IMG2IMG_LORA = _advanced(
    "img2img-lora",
    FluxLoraImageToImageInput,
    "Redraw a picture in the style of a LoRA, guided by a text (Flux dev-advanced).",
    {"prompt": "anime style", "image": "https://example.com/photo.png", "lora_settings": _LORA},
)
FLUX_CONTROLNET_LORA = _advanced(
    "controlnet-lora",
    FluxControlNetInput,
    "Create a picture that follows a control image's pose, depth or edges (Flux ControlNet, optional LoRA).",
    {
        "prompt": "a dancer on a stage, spotlight",
        "control_net_settings": [
            {
                "control_type": "openpose",
                "control_image": "https://example.com/pose.png",
                "control_strength": 0.7,
            }
        ],
    },
)
FLUX_FILL_INPAINT = _advanced(
    "fill-inpaint",
    FluxInpaintInput,
    "Redraw the white-painted area of a picture from a text (Flux fill inpaint).",
    {"prompt": "a vase of tulips", "image": "https://example.com/masked.png"},
)
FLUX_FILL_OUTPAINT = _advanced(
    "fill-outpaint",
    FluxOutpaintInput,
    "Extend a picture beyond its edges, guided by a text (Flux fill outpaint).",
    {
        "prompt": "a wide mountain valley",
        "image": "https://example.com/photo.png",
        "custom_settings": [{"setting_type": "outpaint", "outpaint_left": 256, "outpaint_right": 256}],
    },
)
FLUX_REDUX_VARIATION = _advanced(
    "redux-variation",
    FluxReduxInput,
    "Make a variation of a picture, guided by a text (Flux redux).",
    {"prompt": "the same scene at night", "image": "https://example.com/photo.png"},
)

SPECS = (
    KONTEXT,
    FLUX_TXT2IMG,
    FLUX_IMG2IMG,
    FLUX_SCHNELL_TXT2IMG,
    FLUX_SCHNELL_IMG2IMG,
    FLUX_ADVANCED_TXT2IMG,
    FLUX_ADVANCED_IMG2IMG,
    FLUX_TXT2IMG_LORA,
    FLUX_IMG2IMG_LORA,
    FLUX_CONTROLNET_LORA,
    FLUX_FILL_INPAINT,
    FLUX_FILL_OUTPAINT,
    FLUX_REDUX_VARIATION,
)
