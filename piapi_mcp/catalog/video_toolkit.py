"""The video toolkit (``Qubico/video-toolkit``): upscale, background removal, face swap.

Facts from ``piapi-catalog.md`` §5.14 and §5.16. Upscale: ``video`` MP4 only, at most 720p, 10 to
240 frames, 10 MB, 2x only (n8n), US$0.0003 a frame. Background removal: ``video`` and
``invert_output`` (the doc example consumed 280,000 units, US$0.028). Face swap: ``swap_image``
(the face, at most 2048x2048) into ``target_video`` (MP4, at most 600 frames), with the faces
picked by ``swap_faces_index``/``target_faces_index`` (``"0,1"``; the docs' names, contradiction
5). All answer ``video_url``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from piapi_mcp.catalog._spec import ImageInput, TaskSpec, VideoInput

FacesIndex = Annotated[
    str | None, Field(max_length=64, pattern=r"^\d+(,\d+)*$", description="Faces, e.g. '0,1'.")
]


class VideoUpscaleInput(BaseModel):
    """The ``input`` of ``Qubico/video-toolkit``/``upscale``."""

    model_config = ConfigDict(extra="allow")

    video: VideoInput = Field(description="MP4, at most 720p, 10 to 240 frames, 10 MB.")
    scale: Literal[2] | None = None


class VideoBackgroundInput(BaseModel):
    """The ``input`` of ``Qubico/video-toolkit``/``background-remove``."""

    model_config = ConfigDict(extra="allow")

    video: VideoInput
    invert_output: bool | None = Field(default=None, description="Keep the background, remove the subject.")


class VideoFaceSwapInput(BaseModel):
    """The ``input`` of ``Qubico/video-toolkit``/``face-swap``."""

    model_config = ConfigDict(extra="allow")

    swap_image: ImageInput = Field(description="The face to put in (at most 2048x2048).")
    target_video: VideoInput = Field(description="The video (MP4, at most 600 frames).")
    swap_faces_index: FacesIndex = None
    target_faces_index: FacesIndex = None


_CLIP = "https://example.com/clip.mp4"

SPECS = (
    TaskSpec(
        model="Qubico/video-toolkit",
        task_type="upscale",
        input=VideoUpscaleInput,
        summary="Upscale a short video 2x (video toolkit).",
        output="video",
        typical_seconds=120.0,  # not documented; PiAPI's MCP server allows 300 s
        example={"video": _CLIP},
        noun="upscale",
    ),
    TaskSpec(
        model="Qubico/video-toolkit",
        task_type="background-remove",
        input=VideoBackgroundInput,
        summary="Remove the background of a video (video toolkit).",
        output="video",
        typical_seconds=120.0,
        example={"video": _CLIP, "invert_output": False},
        noun="cut-out video",
        price_usd=0.028,
    ),
    TaskSpec(
        model="Qubico/video-toolkit",
        task_type="face-swap",
        input=VideoFaceSwapInput,
        summary="Put a face from a picture into a video (video toolkit face swap).",
        output="video",
        typical_seconds=300.0,  # PiAPI's MCP server allows 600 s
        example={"swap_image": "https://example.com/face.png", "target_video": _CLIP},
        noun="face swap",
    ),
)
