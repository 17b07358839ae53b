"""What a PiAPI (model, task_type) pair is, as data: one :class:`TaskSpec` per pair.

A spec names the pydantic model of the task's ``input`` (the single source of truth for the
request PiAPI gets and for the schema a tool publishes), the kind of output it makes, how long it
usually takes, the words results use for it, and, for the few pairs agents ask for most, the
curated tool that exposes it. Media inputs are declared on the input model by type
(:data:`ImageInput`, :data:`VideoInput`, :data:`AudioInput`), so every media field of every family
is resolved the same way (URL, local file, ``data:`` URI, earlier output) with no per-family code.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict

from piapi_mcp.models import FollowUps, NextAction, OutputParser, Task, output_reference
from piapi_mcp.models import OutputKind as OutputKind  # re-exported: the catalog's vocabulary

MediaKind = Literal["image", "video", "audio"]
#: ``discontinued``/``stopped``: listed, but refused in one sentence before anything is sent.
Status = Literal["active", "discontinued", "stopped"]


class TaskInput(BaseModel):
    """Base of the catalog's input models: each is built by pydantic on first use, not at import.

    The catalog declares over a hundred models and a server's start needs only its tools' few (for
    ``tools/list``); the others are built the first time a task of theirs is validated.
    """

    model_config = ConfigDict(defer_build=True)


@dataclass(frozen=True)
class MediaField:
    """Marks an input field whose value is media: resolved into a URL PiAPI can fetch before the create."""

    kind: MediaKind


ImageInput = Annotated[str, MediaField("image")]
#: The forms every media field takes, for its description.
MEDIA_FORMS = "an http(s) URL, a local file in the allowed folders, a data: URI, or piapi://tasks/{id}[#n]"
#: The same, in few words, for the curated tools' media arguments (every byte of tools/list costs).
#: The longest media argument a tool takes: a 10 MB file (PiAPI's upload limit) as a base64 data: URI.
MAX_MEDIA_ARGUMENT_CHARS = 14_500_000
MEDIA_FORMS_SHORT = "URL, local file, data: URI or piapi://tasks/{id}"
VideoInput = Annotated[str, MediaField("video")]
AudioInput = Annotated[str, MediaField("audio")]
#: How an output size field says it follows its input picture (see :class:`SizeFromImage`).
SIZE_FOLLOWS_IMAGE = "default: follows the input picture's aspect ratio, long side 1024"


@dataclass(frozen=True)
class SizeFromImage:
    """An output size that, when the caller gives none, follows the input picture's aspect ratio.

    The long side is :attr:`long_side`; both sides are rounded to :attr:`multiple`, kept within
    ``[minimum, maximum]`` and their product within :attr:`max_pixels`. A side the caller gave is
    kept; the other then follows the aspect from it. When the picture's size cannot be read
    (a URL is never fetched for this), :attr:`fallback` is sent, or nothing when it is ``None``.
    """

    #: The media field holding the picture.
    image: str
    width: str = "width"
    height: str = "height"
    long_side: int = 1024
    multiple: int = 16
    minimum: int = 128
    maximum: int = 2048
    max_pixels: int = 1_048_576
    fallback: tuple[int, int] | None = None

    def fill(self, task_input: Mapping[str, Any], picture: tuple[int, int] | None) -> dict[str, Any]:
        """``task_input`` with the size fields the caller left out filled in (from ``picture``'s size)."""
        given_w, given_h = task_input.get(self.width), task_input.get(self.height)
        if given_w is not None and given_h is not None:
            return dict(task_input)
        if picture is None or min(picture) <= 0:
            if self.fallback is None:
                return dict(task_input)
            width, height = self.fallback
            return {**task_input, self.width: given_w or width, self.height: given_h or height}
        aspect = picture[0] / picture[1]
        if given_w is not None:
            width, height = int(given_w), self._side(int(given_w) / aspect)
        elif given_h is not None:
            width, height = self._side(int(given_h) * aspect), int(given_h)
        elif aspect >= 1:
            width, height = self._side(self.long_side), self._side(self.long_side / aspect)
        else:
            width, height = self._side(self.long_side * aspect), self._side(self.long_side)
        # Clamping a very narrow picture's short side may push the area over the cap: shrink the other.
        while width * height > self.max_pixels:
            if (given_w is None and width >= height) or given_h is not None:
                width -= self.multiple
            else:
                height -= self.multiple
        return {**task_input, self.width: width, self.height: height}

    def _side(self, exact: float) -> int:
        """One side rounded to the nearest allowed value."""
        rounded = max(1, round(exact / self.multiple)) * self.multiple
        low = math.ceil(self.minimum / self.multiple) * self.multiple
        high = self.maximum // self.multiple * self.multiple
        return min(max(rounded, low), high)


#: A curated tool's routing: from its validated arguments to the spec it runs and that spec's input.
Route = Callable[[BaseModel], "tuple[TaskSpec, BaseModel]"]


@dataclass(frozen=True)
class ToolInfo:
    """A curated tool: its name, title and the description the model reads.

    A tool is usually its spec's input as arguments. One tool may also front several specs (Flux
    text-to-image and image-to-image; a video tool over several families): it then has arguments
    of its own (``input``) and a ``route`` that picks, from the validated arguments, the spec a
    call runs and that spec's validated input.
    """

    name: str
    title: str
    description: str
    #: The tool's arguments, when they are not its spec's input.
    input: type[BaseModel] | None = None
    #: ``arguments → (spec to run, its validated input)``; ``None`` runs the tool's own spec.
    route: Route | None = None


@dataclass(frozen=True)
class DurationDriver:
    """An input that a task's run time grows with, in proportion to its value over ``reference``.

    ``fields`` are multiplied together (``("width", "height")``: output pixels). A text value
    (``"1080p"``, ``"pro"``) counts as its number in ``values``. A field that is absent, or a value
    this driver cannot read, counts as the reference: the spec's ``typical_seconds`` is for it.
    """

    fields: tuple[str, ...]
    reference: float
    values: Mapping[str, float] = field(default_factory=dict)

    def factor(self, task_input: Mapping[str, Any]) -> float:
        """How many times the reference's run time a task of ``task_input`` takes, by this driver."""
        product = 1.0
        for name in self.fields:
            value = task_input.get(name)
            if isinstance(value, str):
                value = self.values.get(value)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                return 1.0
            product *= float(value)
        return product / self.reference


#: A duration factor is kept within these bounds, whatever odd input a task echoes back.
MIN_DURATION_FACTOR = 0.02
MAX_DURATION_FACTOR = 50.0


@dataclass(frozen=True)
class TaskSpec:
    """One PiAPI (model, task_type) pair, described once."""

    model: str
    task_type: str
    #: The ``input`` PiAPI gets, validated; its JSON schema is what tools and ``piapi://models`` publish.
    input: type[BaseModel]
    #: One line for ``piapi://models``: what the task does.
    summary: str
    output: OutputKind
    #: Seconds from create to end, typically: the first ETA and poll schedule (the sandbox overrides it).
    typical_seconds: float
    #: A valid input, for ``piapi://models/{model}/{task_type}`` and the catalog tests.
    example: Mapping[str, Any]
    #: What results call one request of this kind ("The same edit was requested 12 s ago…").
    noun: str = "task"
    status: Status = "active"
    tool: ToolInfo | None = None
    #: Inputs PiAPI requires that agents would not know, added unless the caller gave them.
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: PiAPI's documented example ``output`` of a completed task of this pair (source noted where the
    #: spec is declared): the shape the simulator answers with, its URLs replaced by files it serves.
    output_example: Mapping[str, Any] = field(default_factory=dict)
    #: How to read this task's ``output`` where the generic walk (``models.walk_outputs``) gets it
    #: wrong (Midjourney's grid and splits, Kling's ``works[]``, Udio's ``songs[]``); ``None``: the walk.
    parse_outputs: OutputParser | None = None

    #: PiAPI's documented price of one task in US$ (``None`` where PiAPI publishes none): estimates,
    #: the spend guard, and the simulator's ``meta.usage`` (1 credit unit = US$1e-7).
    price_usd: float | None = None
    #: What can be done next with a completed task's outputs, as ``run_task`` arguments (an image's
    #: upscale, a Kling video's extension, Midjourney's upscale and variations); ``None``: nothing.
    follow_ups: FollowUps | None = None
    #: An output size that follows the input picture's aspect ratio when not given; ``None``: none.
    size_from_image: SizeFromImage | None = None
    #: The inputs its run time grows with (steps, output pixels, video length...), scaled from
    #: ``typical_seconds``: what is learned about an entry is normalised by them, not keyed per value.
    duration_drivers: tuple[DurationDriver, ...] = ()
    #: The ``output`` field where PiAPI reports a running task's progress (0-100), if the family does.
    progress_field: str | None = None

    def duration_factor(self, task_input: Mapping[str, Any] | None) -> float:
        """How many times its typical run time a task of ``task_input`` takes (1 when nothing drives it)."""
        factor = 1.0
        for driver in self.duration_drivers:
            factor *= driver.factor(task_input or {})
        return min(MAX_DURATION_FACTOR, max(MIN_DURATION_FACTOR, factor))

    @property
    def key(self) -> tuple[str, str]:
        """``(model, task_type)``."""
        return (self.model, self.task_type)

    def media_fields(self) -> dict[str, MediaField]:
        """The input fields that take media (a single value or a list of them), by name."""
        found: dict[str, MediaField] = {}
        for name, info in self.input.model_fields.items():
            marker = _media_marker(info.annotation, info.metadata)
            if marker is not None:
                found[name] = marker
        return found

    def request_input(self, validated: BaseModel) -> dict[str, Any]:
        """The ``input`` to send for a validated request: its fields, then the spec's defaults under them."""
        return {**self.defaults, **validated.model_dump(mode="json", exclude_none=True)}

    @property
    def arguments(self) -> type[BaseModel]:
        """The model of the curated tool's arguments: the tool's own, else this spec's input."""
        return self.tool.input if self.tool is not None and self.tool.input is not None else self.input

    def routed(self, arguments: BaseModel) -> tuple[TaskSpec, BaseModel]:
        """The spec a call of the curated tool runs, and its validated input (``ValidationError`` if not)."""
        if self.tool is not None and self.tool.route is not None:
            return self.tool.route(arguments)
        return self, arguments


def _media_marker(annotation: Any, metadata: list[Any]) -> MediaField | None:
    for item in metadata:
        if isinstance(item, MediaField):
            return item
    if typing.get_origin(annotation) is Annotated:
        return _media_marker(typing.get_args(annotation)[0], list(annotation.__metadata__))
    for arg in typing.get_args(annotation):  # list[ImageInput], ImageInput | None
        if (marker := _media_marker(arg, [])) is not None:
            return marker
    return None


#: PiAPI's image upscaler (``piapi-catalog.md`` §5.16): ``image`` and ``scale`` (2 by default).
IMAGE_TOOLKIT_MODEL = "Qubico/image-toolkit"
IMAGE_UPSCALE_TASK_TYPE = "upscale"
#: Follow-ups offered for at most this many outputs of one task.
MAX_FOLLOWED_OUTPUTS = 4


def upscale_images(task: Task) -> list[NextAction]:
    """Each image output (the first few) upscaled 2x by PiAPI's image toolkit: image specs' follow-up."""
    images = [index for index, output in enumerate(task.outputs, start=1) if output.kind == "image"]
    return [
        NextAction(
            label=f"Upscale image {n} (2x)" if len(images) > 1 else "Upscale the image (2x)",
            model=IMAGE_TOOLKIT_MODEL,
            task_type=IMAGE_UPSCALE_TASK_TYPE,
            input={"image": output_reference(task, n), "scale": 2},
        )
        for n in images[:MAX_FOLLOWED_OUTPUTS]
    ]
