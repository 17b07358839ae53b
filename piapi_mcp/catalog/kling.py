"""Kling (``kling``, ``kling-turbo``): video generation in its versions, extend, lip sync, effects,
try-on, sound, avatar, motion control and omni.

Facts from ``piapi-catalog.md`` §5.3 and §7 item 2. ``video_generation`` has three schemas under
one pair: legacy (versions 1.0 to 2.1-master: duration 5 or 10, ``cfg_scale``, ``camera_control``),
3.0 (``version`` required, duration 3 to 15, ``enable_audio``, ``multi_shots``) and elements
(``version`` 1.6, ``elements``); one input model takes all three, and ``version`` is injected as
``3.0`` (PiAPI's CLI does the same; 3.0 refuses a create without it). Effects, try-on, sound,
avatar and motion control get ``version`` 2.6, as the CLI sends (contradiction 4 of the notes).

The output parser is here because the generic walk reads the legacy shape wrongly: one
``works[]`` entry carries the video twice (``resource`` on Kling's signed CDN and
``resource_without_watermark`` on PiAPI's storage), often a third time as the top-level
``video_url``, and a cover image. Kling 3.0, omni and turbo answer with ``video`` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import AudioInput, DurationDriver, ImageInput, TaskInput, TaskSpec, VideoInput
from piapi_mcp.catalog.video import GENERATE_VIDEO
from piapi_mcp.models import (
    TASK_ID_PATTERN,
    NextAction,
    OutputKind,
    OutputRef,
    Task,
    url_output,
    walk_outputs,
)

#: At most this many ``works`` are read (Kling makes up to 4 per task).
_MAX_WORKS = 16
_WORK_KINDS: dict[str, OutputKind] = {"video": "video", "audio": "audio", "image": "image"}


def _resource(value: object, kind: OutputKind) -> OutputRef | None:
    """A work's ``{resource_without_watermark, resource}`` (or a URL, or ``{url}``): the clean copy first."""
    if isinstance(value, Mapping):
        for key in ("resource_without_watermark", "resource", "url"):
            if (found := url_output(value.get(key), kind)) is not None:
                return found
        return None
    return url_output(value, kind)


def parse_outputs(output: Mapping[str, Any]) -> list[OutputRef]:
    """Each work's video (watermark-free copy preferred), audio and images, then the covers as images.

    Without ``works``, the ``video`` (a URL or ``{url}``) or ``video_url``. Anything else falls back
    to the generic walk.
    """
    works = output.get("works")
    media: list[OutputRef] = []
    covers: list[OutputRef] = []
    for work in works[:_MAX_WORKS] if isinstance(works, list) else []:
        if not isinstance(work, Mapping):
            continue
        for key in ("video", "audio", "image"):
            if (item := _resource(work.get(key), _WORK_KINDS[key])) is not None:
                media.append(item)
        if (cover := _resource(work.get("cover"), "image")) is not None:
            covers.append(cover)
    if not any(item.kind == "video" for item in media):
        video = _resource(output.get("video"), "video") or url_output(output.get("video_url"), "video")
        if video is not None:
            media.insert(0, video)
    found = [*media, *covers]
    return found or walk_outputs(output)


#: Kling's model name, and the task types whose video ``extend_video`` takes (``piapi-catalog.md`` §5.3).
KLING_MODEL = "kling"
EXTEND_TASK_TYPE = "extend_video"
_EXTENDABLE_TASK_TYPES = frozenset({"video_generation", EXTEND_TASK_TYPE})
#: Versions whose videos Kling cannot extend (an older PiAPI page: v1.5).
_NOT_EXTENDABLE_VERSIONS = frozenset({"1.5"})


def follow_ups(task: Task) -> list[NextAction]:
    """A Kling video's follow-up: extend it (``kling`` ``extend_video`` with ``origin_task_id``).

    Offered for a completed ``video_generation`` or ``extend_video`` task that made a video, except
    for versions Kling cannot extend; for a Kling spec's ``follow_ups``.
    """
    if task.task_type not in _EXTENDABLE_TASK_TYPES or not any(o.kind == "video" for o in task.outputs):
        return []
    version = (task.input or {}).get("version")
    if isinstance(version, str | int | float) and str(version) in _NOT_EXTENDABLE_VERSIONS:
        return []
    return [
        NextAction(
            label="Extend the video",
            model=KLING_MODEL,
            task_type=EXTEND_TASK_TYPE,
            input={"origin_task_id": task.task_id},
        )
    ]


# --- Inputs -------------------------------------------------------------------------------------

Prompt = Annotated[
    str | None, Field(max_length=2500, description="What happens, in words (at most 2500 characters).")
]
NegativePrompt = Annotated[str | None, Field(max_length=2500, description="What to keep out.")]
Mode = Literal["std", "pro"]
AspectRatio = Literal["16:9", "9:16", "1:1"]
OriginTaskId = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=TASK_ID_PATTERN, description="The Kling task to start from."),
]


class KlingVideoInput(TaskInput):
    """The ``input`` of ``kling``/``video_generation`` (legacy, 3.0 and elements schemas; extra keys pass)."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt = None
    negative_prompt: NegativePrompt = None
    version: str | None = Field(
        default=None,
        max_length=16,
        description="1.0, 1.5, 1.6, 2.0, 2.1, 2.1-master (legacy: 5 or 10 s), or 3.0 (default, 3 to 15 s).",
    )
    mode: Mode | None = Field(default=None, description="std (720p) or pro (1080p).")
    duration: int | None = Field(
        default=None, ge=3, le=15, description="Seconds: 3 to 15 (3.0), 5 or 10 (legacy)."
    )
    aspect_ratio: AspectRatio | None = Field(default=None, description="Ignored when an image is given.")
    image_url: ImageInput | None = Field(
        default=None, description="The first frame (at most 10 MB, sides > 300 px)."
    )
    image_tail_url: ImageInput | None = Field(default=None, description="The last frame.")
    cfg_scale: float | None = Field(
        default=None, ge=0, le=1, description="Prompt adherence (legacy versions)."
    )
    enable_audio: bool | None = Field(default=None, description="Generate sound too (3.0; costs more).")


class KlingOmniInput(TaskInput):
    """The ``input`` of ``kling``/``omni_video_generation`` (Kling 3.0 omni and o1)."""

    model_config = ConfigDict(extra="allow")

    prompt: str | None = Field(
        default=None, max_length=2500, description="Reference images as @image_1, @image_2…"
    )
    version: Literal["3.0", "o1"] | None = None
    resolution: Literal["720p", "1080p"] | None = None
    duration: int | None = Field(default=None, ge=3, le=15)
    aspect_ratio: AspectRatio | None = None
    enable_audio: bool | None = None
    images: list[ImageInput] | None = Field(default=None, max_length=10, description="Reference images.")
    video: VideoInput | None = Field(default=None, description="A reference video.")
    keep_original_audio: bool | None = None


class KlingTurboInput(TaskInput):
    """The ``input`` of ``kling-turbo``/``video_generation`` (Kling 2.5 turbo; Postman field names only)."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt = None
    negative_prompt: NegativePrompt = None
    aspect_ratio: str | None = Field(default=None, max_length=8)
    duration: int | None = Field(default=None, ge=1, le=15)
    start_image_url: ImageInput | None = None
    end_image_url: ImageInput | None = None
    mode: Mode | None = None
    version: str | None = Field(default=None, max_length=32)


class KlingExtendInput(TaskInput):
    """The ``input`` of ``kling``/``extend_video``: a Kling video continued (not version 1.5 ones)."""

    model_config = ConfigDict(extra="allow")

    origin_task_id: OriginTaskId
    prompt: Prompt = None


class KlingLipSyncInput(TaskInput):
    """The ``input`` of ``kling``/``lip_sync``: a Kling video's lips moved to speech or to an audio file."""

    model_config = ConfigDict(extra="allow")

    origin_task_id: OriginTaskId
    tts_text: str | None = Field(default=None, max_length=2500, description="What to say.")
    tts_timbre: str | None = Field(default=None, max_length=100, description="Kling's voice name.")
    tts_speed: float | None = Field(default=None, ge=0.8, le=2)
    local_dubbing_url: AudioInput | None = Field(
        default=None, description="Audio to use instead (mp3/wav/flac/ogg, < 20 MB, < 60 s)."
    )
    video_url: VideoInput | None = None


KlingEffect = Literal[
    "squish", "expansion", "jellycat_oversea", "spinoff", "rocket", "hearting", "fighting",
    "kissing", "hugging", "figure", "vstack", "birthday", "water", "surfing",
]  # fmt: skip
#: Effects PiAPI's page says need a ``prompt``.
EFFECTS_WITH_PROMPT: Final = frozenset(
    {"rocket", "hearting", "fighting", "kissing", "hugging", "birthday", "water"}
)


class KlingEffectsInput(TaskInput):
    """The ``input`` of ``kling``/``effects``: a photo turned into a short effect video."""

    model_config = ConfigDict(extra="allow")

    image_url: ImageInput
    effect: KlingEffect
    prompt: str | None = Field(
        default=None, max_length=2500, description="Needed for rocket, hearting, fighting…"
    )
    professional_mode: bool = False


class KlingTryOnInput(TaskInput):
    """The ``input`` of ``kling``/``ai_try_on``: a person dressed in garments (n8n's field names)."""

    model_config = ConfigDict(extra="allow")

    model_input: ImageInput = Field(description="The person.")
    dress_input: ImageInput | None = Field(default=None, description="A full-body garment.")
    upper_input: ImageInput | None = None
    lower_input: ImageInput | None = None
    batch_size: int = Field(default=1, ge=1, le=4)


class KlingSoundInput(TaskInput):
    """The ``input`` of ``kling``/``sound``: sound effects from a prompt, or for an earlier Kling video."""

    model_config = ConfigDict(extra="allow")

    prompt: Prompt = None
    duration: Literal[5, 10] | None = None
    origin_task_id: OriginTaskId | None = None


class KlingAvatarInput(TaskInput):
    """The ``input`` of ``kling``/``avatar``: a talking portrait (Postman field names only)."""

    model_config = ConfigDict(extra="allow")

    image_url: ImageInput
    local_dubbing_url: AudioInput | None = Field(default=None, description="The speech to lip-sync.")
    prompt: Prompt = None
    mode: Mode | None = None
    batch_size: int | None = Field(default=None, ge=1, le=4)


PresetMotion = Literal[
    "Cute Baby Dance", "Nezha", "Heart Gesture Dance", "Motorcycle Dance", "Subject 3 Dance",
    "Ghost Step Dance", "Martial Arts", "Running", "Poping",
]  # fmt: skip


class KlingMotionInput(TaskInput):
    """The ``input`` of ``kling``/``motion_control``: a character moved like a reference video or preset."""

    model_config = ConfigDict(extra="allow")

    image_url: ImageInput = Field(description="The character.")
    video_url: VideoInput | None = Field(default=None, description="The motion to copy (or preset_motion).")
    preset_motion: PresetMotion | None = None
    motion_direction: Literal["video", "image"] | None = None
    keep_original_sound: bool | None = None
    mode: Mode | None = None


# --- Specs --------------------------------------------------------------------------------------

#: The legacy completed shape (``piapi-catalog.md`` §5.3): ``works[]`` plus the top-level ``video_url``.
LEGACY_OUTPUT: Final = {
    "type": "m2v_txt2video",
    "status": 99,
    "video_url": "https://storage.goapi.ai/kling/7c1e/video-nowm.mp4",
    "works": [
        {
            "status": 99,
            "type": "m2v_txt2video",
            "cover": {
                "resource": "https://s15-kling.klingai.com/kimg/7c1e/cover.jpg",
                "resource_without_watermark": "",
                "height": 720,
                "width": 1280,
                "duration": 0,
            },
            "video": {
                "resource": "https://v15-kling.klingai.com/bs2/7c1e/video.mp4",
                "resource_without_watermark": "https://storage.goapi.ai/kling/7c1e/video-nowm.mp4",
                "height": 720,
                "width": 1280,
                "duration": 5100,
            },
        }
    ],
}
#: Kling 3.0, omni and turbo: ``video``, one URL.
VIDEO_OUTPUT: Final = {"video": "https://storage.theapi.app/videos/5d2a7f.mp4"}

#: A Kling video's run time grows with its length (typical durations are for 5 s) and its
#: resolution (std 720p; pro and 1080p make 2.25 times the pixels).
KLING_LENGTH: Final = DurationDriver(("duration",), 5)
KLING_MODE: Final = DurationDriver(("mode",), 1, values={"std": 1, "pro": 2.25})
KLING_RESOLUTION: Final = DurationDriver(("resolution",), 1, values={"720p": 1, "1080p": 2.25})

KLING_VIDEO = TaskSpec(
    model="kling",
    task_type="video_generation",
    input=KlingVideoInput,
    summary="Make a video from a text or a first (and last) frame (Kling 3.0, or a legacy version).",
    output="video",
    # PiAPI's 3.0 example: about 1 min 50 s for 5 s std.
    typical_seconds=110.0,
    example={"prompt": "a paper boat drifts down a rainy street", "duration": 5, "aspect_ratio": "16:9"},
    duration_drivers=(KLING_LENGTH, KLING_MODE),
    noun="video",
    tool=GENERATE_VIDEO,
    defaults={"version": "3.0"},
    output_example=LEGACY_OUTPUT,
    parse_outputs=parse_outputs,
    # 3.0 std (720p) is US$0.10 a second; the default is 5 s.
    price_usd=0.50,
    follow_ups=follow_ups,
)
KLING_EXTEND = TaskSpec(
    model="kling",
    task_type="extend_video",
    input=KlingExtendInput,
    summary="Continue a Kling video by a few seconds (not version 1.5 videos).",
    output="video",
    typical_seconds=180.0,  # not documented; as a new Kling video
    example={"origin_task_id": "7c1e0000-2222-4b4b-9c9c-000000000001", "prompt": "the boat sails on"},
    noun="extension",
    output_example=LEGACY_OUTPUT,
    parse_outputs=parse_outputs,
    follow_ups=follow_ups,
)
KLING_LIP_SYNC = TaskSpec(
    model="kling",
    task_type="lip_sync",
    input=KlingLipSyncInput,
    summary="Make the speaker of a Kling video say a text or an audio file.",
    output="video",
    typical_seconds=180.0,
    example={
        "origin_task_id": "7c1e0000-2222-4b4b-9c9c-000000000001",
        "tts_text": "Hello there",
        "tts_speed": 1,
    },
    noun="lip sync",
    output_example=LEGACY_OUTPUT,
    parse_outputs=parse_outputs,
)
KLING_EFFECTS = TaskSpec(
    model="kling",
    task_type="effects",
    input=KlingEffectsInput,
    summary="Turn a photo into a short effect video (squish, expansion, hugging…) (Kling).",
    output="video",
    typical_seconds=180.0,
    example={"image_url": "https://example.com/cat.png", "effect": "squish"},
    noun="effect video",
    defaults={"version": "2.6"},
    output_example=LEGACY_OUTPUT,
    parse_outputs=parse_outputs,
    price_usd=0.26,  # std; pro is US$0.46 (llms.txt)
)
KLING_TRY_ON = TaskSpec(
    model="kling",
    task_type="ai_try_on",
    input=KlingTryOnInput,
    summary="Dress a person's photo in garments from other photos (Kling virtual try-on).",
    output="image",
    typical_seconds=60.0,
    example={"model_input": "https://example.com/person.png", "dress_input": "https://example.com/dress.png"},
    noun="try-on",
    defaults={"version": "2.6"},
    # Not captured; PiAPI's MCP media profile lists works[].image.resource.
    output_example={"works": [{"image": {"resource": "https://storage.theapi.app/images/tryon.png"}}]},
    parse_outputs=parse_outputs,
    price_usd=0.07,
)
KLING_SOUND = TaskSpec(
    model="kling",
    task_type="sound",
    input=KlingSoundInput,
    summary="Make sound effects from a prompt, or for an earlier Kling video (4 outputs).",
    output="audio",
    typical_seconds=60.0,
    example={"prompt": "rain on a tin roof", "duration": 5},
    noun="sound",
    defaults={"version": "2.6"},
    # Not captured; PiAPI's CLI comment mentions works[].audio.
    output_example={"works": [{"audio": {"resource": "https://storage.theapi.app/audios/sound.mp3"}}]},
    parse_outputs=parse_outputs,
    price_usd=0.07,
)
KLING_AVATAR = TaskSpec(
    model="kling",
    task_type="avatar",
    input=KlingAvatarInput,
    summary="Make a portrait talk to an audio file (Kling avatar).",
    output="video",
    typical_seconds=240.0,
    example={
        "image_url": "https://example.com/face.png",
        "local_dubbing_url": "https://example.com/speech.mp3",
    },
    noun="avatar video",
    defaults={"version": "2.6"},
    output_example=LEGACY_OUTPUT,  # not captured: Kling's legacy shape, which the parser reads
    parse_outputs=parse_outputs,
)
KLING_MOTION = TaskSpec(
    model="kling",
    task_type="motion_control",
    input=KlingMotionInput,
    summary="Move a character like a reference video or a preset dance (Kling 2.6 motion control).",
    output="video",
    typical_seconds=510.0,  # PiAPI's example: about 8.5 min
    example={"image_url": "https://example.com/person.png", "preset_motion": "Running"},
    noun="motion video",
    defaults={"version": "2.6"},
    output_example={**LEGACY_OUTPUT, "type": "m2v_motion_control"},
    parse_outputs=parse_outputs,
)
KLING_OMNI = TaskSpec(
    model="kling",
    task_type="omni_video_generation",
    input=KlingOmniInput,
    summary="Make a video from a prompt that refers to reference images as @image_1… (Kling 3.0 omni or o1).",
    output="video",
    typical_seconds=83.0,  # PiAPI's o1 example: about 83 s for 5 s
    example={"prompt": "@image_1 waves hello", "images": ["https://example.com/a.png"], "duration": 5},
    duration_drivers=(KLING_LENGTH, KLING_RESOLUTION),
    noun="video",
    defaults={"version": "3.0"},
    output_example=VIDEO_OUTPUT,
    parse_outputs=parse_outputs,
    price_usd=0.50,  # 3.0 omni 720p: US$0.10 a second, 5 s
)
KLING_TURBO = TaskSpec(
    model="kling-turbo",
    task_type="video_generation",
    input=KlingTurboInput,
    summary="Make a video from a text or a start (and end) image (Kling 2.5 turbo).",
    output="video",
    typical_seconds=137.0,  # PiAPI's webhook example: about 2 min 17 s for 5 s
    example={"prompt": "a fox runs through snow", "duration": 5, "aspect_ratio": "16:9"},
    duration_drivers=(KLING_LENGTH, KLING_MODE),
    noun="video",
    output_example=VIDEO_OUTPUT,
    parse_outputs=parse_outputs,
    price_usd=0.28,  # the example consumed 2,800,000 units for 5 s
)

SPECS = (
    KLING_VIDEO,
    KLING_EXTEND,
    KLING_LIP_SYNC,
    KLING_EFFECTS,
    KLING_TRY_ON,
    KLING_SOUND,
    KLING_AVATAR,
    KLING_MOTION,
    KLING_OMNI,
    KLING_TURBO,
)
