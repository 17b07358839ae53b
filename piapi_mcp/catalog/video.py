"""``generate_video``: one curated tool over the video families, routed to each family's own spec.

The tool takes what every video model shares (a prompt, a start image, an end image, a duration,
an aspect ratio) and a ``model`` choice; the route puts each in the field the chosen family calls
it (Kling ``image_url``/``image_tail_url``, Luma ``start_image``/``end_image``, Seedance
``image_urls``, Veo ``tail_image_url`` and a duration written ``"8s"``…), picks the family's
image-to-video task where it has a separate one, and validates the result with that spec's input
model. A combination the chosen family does not take (an end image for Hailuo, a 7 s Luma video)
is refused in one sentence before anything is sent. Anything family-specific goes through
``run_task``.

The default model is Kling 3.0 (``kling``): the best-documented video schema PiAPI has (required
fields, ranges), text or start and end frames, 3 to 15 s, a documented price (US$0.10 a second at
720p) and a documented cancel.

This module declares no spec (``SPECS`` is empty): the tool is carried by Kling's
``video_generation`` spec, the default, and finds the others in the catalog when a call comes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from piapi_mcp.catalog._spec import ImageInput, TaskInput, ToolInfo

if TYPE_CHECKING:
    from piapi_mcp.catalog._spec import TaskSpec

VideoModel = Literal["kling", "hailuo", "luma", "seedance", "veo3", "veo3.1", "wan", "hunyuan", "sora2"]
DEFAULT_MODEL: Final = "kling"


@dataclass(frozen=True)
class VideoFamily:
    """How ``generate_video``'s common fields map to one family's input."""

    #: ``(model, task_type)`` run without a start image, and with one.
    text: tuple[str, str]
    image: tuple[str, str]
    #: The field a start image goes in; the end image's (``None``: the family takes none). When both
    #: name the same field, it is a list ``[start, end]``.
    start: str
    end: str | None = None
    #: The durations the family takes (``()``: none, it makes videos of its own length).
    durations: Sequence[int] = ()
    #: The aspect ratios it takes (``()``: none); whether it takes one with a start image.
    aspects: Sequence[str] = ()
    aspect_with_image: bool = True
    #: How the family writes a duration (Veo: ``"8s"``).
    seconds_suffix: str = ""
    #: Fields sent with every request, and with image requests only.
    fixed: Mapping[str, Any] = field(default_factory=dict)
    with_image: Mapping[str, Any] = field(default_factory=dict)


_KLING_RATIOS: Final = ("16:9", "9:16", "1:1")
_VEO_RATIOS: Final = ("16:9", "9:16")
#: Per family, from ``piapi-catalog.md`` §5.3 to §5.8 (Sora2's and Wan 2.6's durations are not
#: documented: any whole number of seconds the tool takes is passed on for PiAPI to judge).
FAMILIES: Final[Mapping[str, VideoFamily]] = {
    "kling": VideoFamily(
        ("kling", "video_generation"),
        ("kling", "video_generation"),
        "image_url",
        "image_tail_url",
        durations=range(3, 16),
        aspects=_KLING_RATIOS,
    ),
    "hailuo": VideoFamily(
        ("hailuo", "video_generation"), ("hailuo", "video_generation"), "image_url", durations=(6, 10)
    ),
    "luma": VideoFamily(
        ("luma", "video_generation"),
        ("luma", "video_generation"),
        "start_image",
        "end_image",
        durations=(5, 10),
        aspects=("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21"),
        # PiAPI's newer Luma schema (start_image/end_image) comes with the sub-model in input.model.
        fixed={"model": "ray-v2"},
    ),
    "seedance": VideoFamily(
        ("seedance", "seedance-2"),
        ("seedance", "seedance-2"),
        "image_urls",
        "image_urls",
        durations=range(4, 16),
        aspects=("21:9", "16:9", "4:3", "1:1", "3:4", "9:16"),
        # Frames given are first and last frames: said, rather than left to PiAPI's guess.
        with_image={"mode": "first_last_frames"},
    ),
    "veo3": VideoFamily(
        ("veo3", "veo3-video"),
        ("veo3", "veo3-video"),
        "image_url",
        durations=(4, 6, 8),
        aspects=_VEO_RATIOS,
        seconds_suffix="s",
    ),
    "veo3.1": VideoFamily(
        ("veo3.1", "veo3.1-video"),
        ("veo3.1", "veo3.1-video"),
        "image_url",
        "tail_image_url",
        durations=(4, 6, 8),
        aspects=_VEO_RATIOS,
        seconds_suffix="s",
    ),
    "wan": VideoFamily(
        ("Wan", "wan26-txt2video"),
        ("Wan", "wan26-img2video"),
        "image",
        durations=range(1, 21),
        aspects=("16:9", "9:16", "1:1", "4:3", "3:4"),
        aspect_with_image=False,
    ),
    "hunyuan": VideoFamily(
        ("Qubico/hunyuan", "txt2video"),
        ("Qubico/hunyuan", "img2video-concat"),
        "image",
        aspects=("16:9", "9:16", "1:1", "4:3"),
    ),
    "sora2": VideoFamily(
        ("sora2", "sora2-video"),
        ("sora2", "sora2-video"),
        "image_url",
        durations=range(1, 21),
        aspects=_VEO_RATIOS,
    ),
}


def _allowed(values: Sequence[Any]) -> str:
    if isinstance(values, range):
        return f"{values.start} to {values.stop - 1}"
    return ", ".join(str(value) for value in values)


def _refuse(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


class VideoArguments(TaskInput):
    """``generate_video``'s arguments: what every video model shares, and which model to run."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(max_length=2500, pattern=r"\S", description="What happens in the video.")
    start_image: ImageInput | None = Field(
        default=None, description="First frame: URL, local file, data: URI or piapi://tasks/{id}."
    )
    end_image: ImageInput | None = Field(
        default=None, description="Last frame (kling, luma, seedance, veo3.1)."
    )
    duration: int | None = Field(
        default=None, description="Seconds (kling 3-15, hailuo 6/10, luma 5/10, veo 4/6/8)."
    )
    aspect_ratio: str | None = Field(default=None, description="e.g. 16:9, 9:16, 1:1.")
    model: VideoModel = Field(default=DEFAULT_MODEL, description="kling = Kling 3.0.")

    @model_validator(mode="after")
    def _fits_the_model(self) -> VideoArguments:
        family = FAMILIES[self.model]
        if self.end_image is not None:
            if family.end is None:
                with_end = ", ".join(name for name, known in FAMILIES.items() if known.end is not None)
                raise _refuse(
                    "no_end_image", f"{self.model} takes no `end_image` (use {with_end}, or leave it out)"
                )
            if self.start_image is None:
                raise _refuse("end_needs_start", "`end_image` needs a `start_image` (the first frame)")
        if self.duration is not None:
            if not family.durations:
                raise _refuse(
                    "no_duration", f"{self.model} takes no `duration` (it makes videos of its own length)"
                )
            if self.duration not in family.durations:
                raise _refuse(
                    "duration",
                    f"`duration` with {self.model} must be {_allowed(family.durations)} s "
                    f"(got {self.duration})",
                )
        if self.aspect_ratio is not None:
            if self.start_image is not None and not family.aspect_with_image:
                raise _refuse(
                    "aspect_with_image",
                    f"{self.model} takes no `aspect_ratio` with a `start_image` (the image sets it)",
                )
            if self.aspect_ratio not in family.aspects:
                allowed = f"be {_allowed(family.aspects)}" if family.aspects else "be left out"
                raise _refuse(
                    "aspect_ratio",
                    f"`aspect_ratio` with {self.model} must {allowed} (got {self.aspect_ratio})",
                )
        return self


def route_video(arguments: BaseModel) -> tuple[TaskSpec, BaseModel]:
    """The spec the chosen model runs (its image-to-video task when a start image is given), and its input."""
    from piapi_mcp.catalog import CATALOG  # the catalog is built from the modules that import this one

    assert isinstance(arguments, VideoArguments)
    family = FAMILIES[arguments.model]
    start, end = arguments.start_image, arguments.end_image
    spec = CATALOG.find(*(family.image if start is not None else family.text))
    assert spec is not None, f"{arguments.model}'s spec is missing from the catalog"
    fields: dict[str, Any] = {"prompt": arguments.prompt, **family.fixed}
    if start is not None:
        fields.update(family.with_image)
        if family.end == family.start:
            fields[family.start] = [start] if end is None else [start, end]
        else:
            fields[family.start] = start
            if end is not None and family.end is not None:
                fields[family.end] = end
    if arguments.duration is not None:
        fields["duration"] = (
            f"{arguments.duration}{family.seconds_suffix}" if family.seconds_suffix else arguments.duration
        )
    if arguments.aspect_ratio is not None:
        fields["aspect_ratio"] = arguments.aspect_ratio
    return spec, spec.input.model_validate(fields)


GENERATE_VIDEO: Final = ToolInfo(
    name="generate_video",
    title="Generate a video",
    description=(
        "Make a short video from a prompt, optionally animating a start image (to an end image). Paid: about "
        "US$0.2-1 a video. Takes 1-5 min, so it usually returns a task_id: resume with get_task. "
        "Model-specific options: run_task."
    ),
    input=VideoArguments,
    route=route_video,
)

SPECS: tuple[TaskSpec, ...] = ()
