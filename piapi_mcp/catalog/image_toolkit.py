"""The image toolkit (``Qubico/image-toolkit``): face swap, background removal, segmentation, upscaling.

Facts from PiAPI's pages (``piapi-catalog.md`` §5.14, §5.16): ``face-swap`` and ``multi-face-swap``
take ``target_image`` (whose face is replaced) and ``swap_image`` (the face), each at most
2048 x 2048; multi-face adds ``swap_faces_index`` and ``target_faces_index`` ("0,1": faces numbered
from 0, roughly left to right), $0.015 a generation. ``background-remove`` takes ``image`` (and an
undocumented ``rmbg_model``), $0.001; ``segment`` ``image`` and ``prompt`` (``negative_prompt``,
``segment_factor`` optional); ``upscale`` ``image``, ``scale`` (2 to 10 per PiAPI's MCP server, 2 or
4 per n8n) and ``face_enhance``. Every output is ``image_url``. Where sources disagree nothing is
checked, and extra keys pass through.

Two curated tools front these specs: ``swap_face`` (an image or, through the video toolkit, a video)
and ``image_tools`` (one ``operation`` over background removal, upscaling and segmentation).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from piapi_mcp.catalog._spec import MEDIA_FORMS_SHORT, ImageInput, TaskInput, TaskSpec, ToolInfo, VideoInput
from piapi_mcp.catalog.video_toolkit import FACES_INDEX_PATTERN, VIDEO_FACE_SWAP

IMAGE_TOOLKIT_MODEL = "Qubico/image-toolkit"


def _image_output(name: str) -> dict[str, Any]:
    """The output PiAPI's MCP server reads of a toolkit image task (no completed example is published)."""
    return {"image_url": f"https://img.theapi.app/temp/{name}.png"}


# --- face swap ------------------------------------------------------------------------------------


class FaceSwapInput(TaskInput):
    """The ``input`` of an image-toolkit ``face-swap`` task."""

    model_config = ConfigDict(extra="allow")

    target_image: ImageInput = Field(
        min_length=1, description="The picture whose face is replaced (at most 2048 x 2048)."
    )
    swap_image: ImageInput = Field(min_length=1, description="The picture with the face to put in.")


class MultiFaceSwapInput(FaceSwapInput):
    """The ``input`` of an image-toolkit ``multi-face-swap`` task."""

    swap_faces_index: str | None = Field(
        default=None, pattern=FACES_INDEX_PATTERN, description="Faces of swap_image to use, e.g. '0,1'."
    )
    target_faces_index: str | None = Field(
        default=None, pattern=FACES_INDEX_PATTERN, description="Faces of target_image to replace, e.g. '1,0'."
    )


class SwapFaceArguments(TaskInput):
    """``swap_face``'s arguments: the face, and the picture or the video it goes onto."""

    model_config = ConfigDict(extra="forbid")

    face: ImageInput = Field(min_length=1, description=f"The picture with the face: {MEDIA_FORMS_SHORT}.")
    target_image: ImageInput | None = Field(default=None, description="The picture to put it onto.")
    target_video: VideoInput | None = Field(default=None, description="Or the video (MP4, <= 600 frames).")

    @model_validator(mode="after")
    def _one_target(self) -> SwapFaceArguments:
        if (self.target_image is None) == (self.target_video is None):
            raise PydanticCustomError(
                "one_target",
                "give exactly one of `target_image` and `target_video` (what the face goes onto)",
            )
        return self


def _route_swap(arguments: BaseModel) -> tuple[TaskSpec, BaseModel]:
    """A video target runs the video toolkit's face swap, a picture the image toolkit's.

    Several faces by index (multi-face-swap, or the video swap's indexes) go through run_task: two
    more arguments here would cost every tools/list for what agents rarely ask.
    """
    given = SwapFaceArguments.model_validate(arguments.model_dump())
    if given.target_video is not None:
        video = {"swap_image": given.face, "target_video": given.target_video}
        return VIDEO_FACE_SWAP, VIDEO_FACE_SWAP.input.model_validate(video)
    return FACE_SWAP, FACE_SWAP.input.model_validate(
        {"target_image": given.target_image, "swap_image": given.face}
    )


FACE_SWAP = TaskSpec(
    model=IMAGE_TOOLKIT_MODEL,
    task_type="face-swap",
    input=FaceSwapInput,
    summary="Put the face from one picture onto the person in another (Faceswap).",
    output="image",
    # Not documented; a single-image Qubico task, like Kontext's 30 s.
    typical_seconds=20.0,
    example={
        "target_image": "https://i.ibb.co/LnLYwhR/66f41e64b1922.jpg",
        "swap_image": "https://i.ibb.co/m9BFL9J/ad61a39afd9079e57a5908c0bd9dd995.jpg",
    },
    noun="face swap",
    tool=ToolInfo(
        name="swap_face",
        title="Swap a face (Faceswap)",
        description=(
            "Put the face from one picture onto the person in another picture (target_image) or in a "
            "video (target_video); result saved and linked. Paid; about 20 s for a picture, minutes for a "
            "video."
        ),
        input=SwapFaceArguments,
        route=_route_swap,
    ),
    output_example=_image_output("2f0c7a4e-5d1b-4c8e-9f3a-6b2d8e4c1a57"),
)

MULTI_FACE_SWAP = TaskSpec(
    model=IMAGE_TOOLKIT_MODEL,
    task_type="multi-face-swap",
    input=MultiFaceSwapInput,
    summary="Swap several faces at once, chosen by index, from one picture onto another (Faceswap).",
    output="image",
    typical_seconds=30.0,
    example={
        "swap_image": "https://i.ibb.co/kVPGB4wG/input.png",
        "target_image": "https://i.ibb.co/Lhbjs0tx/source.png",
        "swap_faces_index": "0,1",
        "target_faces_index": "0,1",
    },
    noun="face swap",
    price_usd=0.015,
    output_example=_image_output("7a3e9c1d-2b4f-4e6a-8c0d-1f5b9e3a7c24"),
)

# --- background removal, segmentation, upscaling ------------------------------------------------


class BackgroundRemoveInput(TaskInput):
    """The ``input`` of an image-toolkit ``background-remove`` task."""

    model_config = ConfigDict(extra="allow")

    image: ImageInput = Field(min_length=1, description="The picture whose background is removed.")
    rmbg_model: str | None = Field(default=None, description="PiAPI's removal model (values undocumented).")


class SegmentInput(TaskInput):
    """The ``input`` of an image-toolkit ``segment`` task."""

    model_config = ConfigDict(extra="allow")

    image: ImageInput = Field(min_length=1, description="The picture to cut from.")
    prompt: str = Field(min_length=1, pattern=r"\S", description="What to cut out, e.g. 'the dog'.")
    negative_prompt: str | None = Field(default=None, description="What to leave out, comma separated.")
    segment_factor: int | None = Field(
        default=None, description="Pixels to grow (+) or shrink (-) the cut-out's edge."
    )


class UpscaleInput(TaskInput):
    """The ``input`` of an image-toolkit ``upscale`` task."""

    model_config = ConfigDict(extra="allow")

    image: ImageInput = Field(min_length=1, description="The picture to enlarge.")
    scale: int | None = Field(default=None, description="How many times larger (2 or 4 are safe).")
    face_enhance: bool | None = Field(default=None, description="Also restore faces.")


Operation = Literal["remove_background", "upscale", "segment"]


class ImageToolsArguments(TaskInput):
    """``image_tools``' arguments: an operation on one picture, and the option that operation takes."""

    model_config = ConfigDict(extra="forbid")

    operation: Operation = Field(description="segment cuts out what prompt names.")
    image: ImageInput = Field(min_length=1, description=f"The picture: {MEDIA_FORMS_SHORT}.")
    prompt: str | None = Field(default=None, description="What to cut out ('the dog').")
    scale: Literal[2, 4] = Field(default=2, description="How many times larger.")

    @model_validator(mode="after")
    def _fits(self) -> ImageToolsArguments:
        if self.operation == "segment" and self.prompt is None:
            raise PydanticCustomError("prompt_missing", "`prompt` is required to segment (what to cut out)")
        if self.operation != "segment" and self.prompt is not None:
            raise PydanticCustomError("segment_only", "`prompt` applies only to operation segment")
        if self.operation != "upscale" and self.scale != 2:
            raise PydanticCustomError("upscale_only", "`scale` applies only to operation upscale")
        return self


def _route_tools(arguments: BaseModel) -> tuple[TaskSpec, BaseModel]:
    """The toolkit task of the operation, with the fields it takes."""
    given = ImageToolsArguments.model_validate(arguments.model_dump())
    if given.operation == "segment":
        return SEGMENT, SegmentInput.model_validate({"image": given.image, "prompt": given.prompt})
    if given.operation == "upscale":
        return UPSCALE, UpscaleInput.model_validate({"image": given.image, "scale": given.scale})
    return BACKGROUND_REMOVE, BackgroundRemoveInput.model_validate({"image": given.image})


BACKGROUND_REMOVE = TaskSpec(
    model=IMAGE_TOOLKIT_MODEL,
    task_type="background-remove",
    input=BackgroundRemoveInput,
    summary="Remove the background of a picture, leaving the subject on transparency (image toolkit).",
    output="image",
    # Not documented; the cheapest toolkit task, seconds.
    typical_seconds=10.0,
    example={"image": "https://example.com/product.png"},
    noun="background removal",
    price_usd=0.001,
    tool=ToolInfo(
        name="image_tools",
        title="Image tools (background, upscale, segment)",
        description=(
            "Remove a picture's background, upscale it 2x or 4x, or cut out what a prompt names "
            "(PiAPI image toolkit); result saved, previewed and linked. Paid, cheap (background "
            "removal $0.001); about 10-20 s."
        ),
        input=ImageToolsArguments,
        route=_route_tools,
    ),
    output_example=_image_output("c4e8a1f2-9b3d-4a6e-8f1c-3d7b2e9a5c06"),
)

SEGMENT = TaskSpec(
    model=IMAGE_TOOLKIT_MODEL,
    task_type="segment",
    input=SegmentInput,
    summary="Cut out of a picture what a prompt names (image toolkit).",
    output="image",
    # Not documented.
    typical_seconds=15.0,
    example={"image": "https://example.com/photo.png", "prompt": "the dog"},
    noun="segmentation",
    output_example=_image_output("e1b7d3a9-4c2f-4e8b-a6d0-9f3c5b1e7a42"),
)

UPSCALE = TaskSpec(
    model=IMAGE_TOOLKIT_MODEL,
    task_type="upscale",
    input=UpscaleInput,
    summary="Enlarge a picture 2x or 4x with detail restored (image toolkit super-resolution).",
    output="image",
    # Not documented.
    typical_seconds=20.0,
    example={"image": "https://example.com/photo.png", "scale": 2},
    noun="upscale",
    output_example=_image_output("5d9a2c7e-1f4b-4b3a-9e6c-8a2d4f0b3e19"),
)

SPECS = (FACE_SWAP, MULTI_FACE_SWAP, BACKGROUND_REMOVE, SEGMENT, UPSCALE)
