"""The video toolkit (``Qubico/video-toolkit``): face swap, upscale, background removal of a video.

Facts from PiAPI's pages (``piapi-catalog.md`` §5.14, §5.16): ``face-swap`` takes ``swap_image`` (the
face, at most 2048 x 2048) and ``target_video`` (MP4, at most 600 frames), with optional
``swap_faces_index``/``target_faces_index`` ("0", "1,0"), priced by frames processed. ``upscale`` takes
``video`` (MP4, at most 720p, 10 to 240 frames, 10 MB, 2x only per n8n; $0.0003 a frame);
``background-remove`` takes ``video`` and ``invert_output``. Every output is ``video_url``. Ranges come
from third-party code only, so they are not checked and extra keys pass through.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import ImageInput, TaskInput, TaskSpec, VideoInput

VIDEO_TOOLKIT_MODEL = "Qubico/video-toolkit"
#: The pattern of PiAPI's face indexes: numbers from 0, comma separated ("0", "1,0").
FACES_INDEX_PATTERN = r"^\d{1,2}(,\d{1,2}){0,15}$"
#: What PiAPI's MCP server reads of every toolkit video task (no completed example is published).
_VIDEO_OUTPUT = {"video_url": "https://img.theapi.app/temp/6c9f1d2e-8b4a-4f3e-9a7d-2e5b8c1f0a93.mp4"}


class VideoFaceSwapInput(TaskInput):
    """The ``input`` of a video-toolkit ``face-swap`` task."""

    model_config = ConfigDict(extra="allow")

    swap_image: ImageInput = Field(min_length=1, description="The picture with the face to put in.")
    target_video: VideoInput = Field(
        min_length=1, description="The video (MP4, at most 600 frames) whose face is replaced."
    )
    swap_faces_index: str | None = Field(
        default=None, pattern=FACES_INDEX_PATTERN, description="Faces of swap_image to use, e.g. '0,1'."
    )
    target_faces_index: str | None = Field(
        default=None, pattern=FACES_INDEX_PATTERN, description="Faces of the video to replace, e.g. '1,0'."
    )


class VideoInputOnly(TaskInput):
    """The ``input`` of a video-toolkit ``upscale`` task: the video (``scale`` passes through, 2 only)."""

    model_config = ConfigDict(extra="allow")

    video: VideoInput = Field(
        min_length=1, description="The video (MP4, at most 720p, 10 to 240 frames, 10 MB)."
    )


class VideoBackgroundInput(TaskInput):
    """The ``input`` of a video-toolkit ``background-remove`` task."""

    model_config = ConfigDict(extra="allow")

    video: VideoInput = Field(min_length=1, description="The video whose background is removed.")
    invert_output: bool | None = Field(
        default=None, description="Keep the background and remove the subject instead."
    )


VIDEO_FACE_SWAP = TaskSpec(
    model=VIDEO_TOOLKIT_MODEL,
    task_type="face-swap",
    input=VideoFaceSwapInput,
    summary="Put the face from a picture onto the people in a video (Faceswap).",
    output="video",
    # Not documented; PiAPI's MCP server waits up to 600 s for it.
    typical_seconds=180.0,
    example={
        "swap_image": "https://i.ibb.co/m9BFL9J/ad61a39afd9079e57a5908c0bd9dd995.jpg",
        "target_video": "https://example.com/clip.mp4",
    },
    noun="face swap",
    output_example=_VIDEO_OUTPUT,
)

VIDEO_UPSCALE = TaskSpec(
    model=VIDEO_TOOLKIT_MODEL,
    task_type="upscale",
    input=VideoInputOnly,
    summary="Upscale a short video 2x (video toolkit).",
    output="video",
    # Not documented; PiAPI's MCP server waits up to 300 s for it.
    typical_seconds=120.0,
    example={"video": "https://example.com/clip.mp4"},
    noun="upscale",
    output_example=_VIDEO_OUTPUT,
)

VIDEO_BACKGROUND_REMOVE = TaskSpec(
    model=VIDEO_TOOLKIT_MODEL,
    task_type="background-remove",
    input=VideoBackgroundInput,
    summary="Remove the background of a video (video toolkit).",
    output="video",
    # Not documented; a video task of the same toolkit as upscale.
    typical_seconds=120.0,
    example={"video": "https://example.com/clip.mp4", "invert_output": False},
    noun="background removal",
    output_example=_VIDEO_OUTPUT,
    # PiAPI's completed example consumed 280,000 units (US$0.028; piapi-api.md §2.2).
    price_usd=0.028,
)

SPECS = (VIDEO_FACE_SWAP, VIDEO_UPSCALE, VIDEO_BACKGROUND_REMOVE)
