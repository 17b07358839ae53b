"""Midjourney (``midjourney``): discontinued at PiAPI; listed, and refused before anything is sent.

PiAPI's Midjourney model page and homepage say "Service discontinued. Midjourney API service is no
longer provided by PiAPI" (``piapi-catalog.md`` §5.2); the endpoint pages remain, and their fields are
declared here as documented (imagine, upscale, variation, reroll, describe) or as PiAPI's Postman
collection names them (seed, blend, inpaint, outpaint, pan), loosely.

Its output parser reads a task of old, because the generic walk reads a Midjourney result wrongly: one
task lists the 2x2 grid (``image_url``), the four split images twice (``image_urls`` on PiAPI's
storage, ``temporary_image_urls`` on Midjourney's CDN), a Discord copy of the grid and, on some
plans, ``intermediate_image_urls`` (``piapi-catalog.md`` §5.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from piapi_mcp.catalog._spec import MEDIA_FORMS, ImageInput, TaskInput, TaskSpec
from piapi_mcp.models import (
    TASK_ID_PATTERN,
    NextAction,
    OutputRef,
    Task,
    text_output,
    url_output,
    walk_outputs,
)

MODEL: Final = "midjourney"


def _urls(value: object) -> list[OutputRef]:
    values = value if isinstance(value, list) else [value]
    return [found for item in values if (found := url_output(item, "image")) is not None]


def parse_outputs(output: Mapping[str, Any]) -> list[OutputRef]:
    """The four splits first (``#1`` to ``#4``, as Midjourney's upscale and variation count them), then the
    grid as one more image; a describe task's ``description`` as text.

    The splits are PiAPI's copies (``image_urls``), or Midjourney's (``temporary_image_urls``) when
    PiAPI sent none; the grid is ``image_url``, or the Discord copy when that is all there is.
    Anything else falls back to the generic walk.
    """
    splits = _urls(output.get("image_urls")) or _urls(output.get("temporary_image_urls"))
    grid = _urls(output.get("image_url")) or _urls(output.get("discord_image_url"))
    found = [*splits, *grid[:1]]
    if (description := text_output(output.get("description"))) is not None:
        found.append(description)
    return found or walk_outputs(output)


MIDJOURNEY_MODEL = "midjourney"
#: Task types that end in a 2x2 grid of four images, which upscale and variation pick from by index.
_GRID_TASK_TYPES = frozenset({"imagine", "variation", "reroll", "blend"})
_SPLITS = 4


def follow_ups(task: Task) -> list[NextAction]:
    """A Midjourney grid's follow-ups: upscale (U1-U4) and vary (V1-V4) each image, and reroll the grid.

    ``index`` is a string (``"1"`` to ``"4"``) as PiAPI documents it; variation and reroll need the
    prompt, taken from the task's own input (without it, only the upscales). For a Midjourney
    spec's ``follow_ups``.
    """
    if task.task_type not in _GRID_TASK_TYPES or sum(o.kind == "image" for o in task.outputs) < _SPLITS:
        return []
    origin = task.task_id
    actions = [
        NextAction(
            label=f"Upscale image {n} (U{n})",
            model=MIDJOURNEY_MODEL,
            task_type="upscale",
            input={"origin_task_id": origin, "index": str(n)},
        )
        for n in range(1, _SPLITS + 1)
    ]
    prompt = (task.input or {}).get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        actions += [
            NextAction(
                label=f"Variations of image {n} (V{n})",
                model=MIDJOURNEY_MODEL,
                task_type="variation",
                input={"origin_task_id": origin, "index": str(n), "prompt": prompt},
            )
            for n in range(1, _SPLITS + 1)
        ]
        actions.append(
            NextAction(
                label="Reroll the grid",
                model=MIDJOURNEY_MODEL,
                task_type="reroll",
                input={"origin_task_id": origin, "prompt": prompt},
            )
        )
    return actions


def parse_seed(output: Mapping[str, Any]) -> list[OutputRef]:
    """A seed task's ``seed`` as text (a number or a string), else what :func:`parse_outputs` finds."""
    seed = output.get("seed")
    found = text_output(str(seed)) if isinstance(seed, (int, str)) and not isinstance(seed, bool) else None
    return [found] if found is not None else parse_outputs(output)


# --- Inputs -------------------------------------------------------------------------------------------

ProcessMode = Literal["relax", "fast", "turbo"]
OriginTaskId = Field(
    min_length=1, max_length=128, pattern=TASK_ID_PATTERN, description="The Midjourney task to act on."
)
AspectRatio = Field(default=None, max_length=10, description='Aspect ratio, e.g. "1:1" (default), "16:9".')
SkipPromptCheck = Field(default=None, description="Skip PiAPI's prompt check.")
BotId = Field(default=None, description="Which Midjourney account runs it (HYA Pro plans only).")


def _prompt(required: bool) -> Any:
    return Field(
        default=... if required else None, min_length=1, max_length=4000, description="The Midjourney prompt."
    )


class _Loose(TaskInput):
    # Midjourney is discontinued and thinly documented: keys not declared here pass through.
    model_config = ConfigDict(extra="allow")


class ImagineInput(_Loose):
    """The ``input`` of a Midjourney ``imagine`` task."""

    prompt: str = _prompt(True)
    aspect_ratio: str | None = AspectRatio
    process_mode: ProcessMode | None = None
    skip_prompt_check: bool | None = SkipPromptCheck
    bot_id: int | None = BotId


class UpscaleInput(_Loose):
    """The ``input`` of a Midjourney ``upscale`` task."""

    origin_task_id: str = OriginTaskId
    index: Literal["1", "2", "3", "4", "light", "beta", "2x", "4x", "subtle", "creative"] = Field(
        description="Which image (1 to 4), or light/beta (v4), 2x/4x (v5), subtle/creative (v6) upscales."
    )


class VariationInput(_Loose):
    """The ``input`` of a Midjourney ``variation`` task."""

    origin_task_id: str = OriginTaskId
    index: Literal["1", "2", "3", "4", "high_variation", "low_variation"] = Field(
        description="Which image (1 to 4), or high/low variation of an upscaled v5.2/v6 image."
    )
    prompt: str = _prompt(True)
    aspect_ratio: str | None = AspectRatio
    skip_prompt_check: bool | None = SkipPromptCheck


class RerollInput(_Loose):
    """The ``input`` of a Midjourney ``reroll`` task."""

    origin_task_id: str = OriginTaskId
    prompt: str | None = _prompt(False)
    aspect_ratio: str | None = AspectRatio
    skip_prompt_check: bool | None = SkipPromptCheck


class DescribeInput(_Loose):
    """The ``input`` of a Midjourney ``describe`` task."""

    image_url: ImageInput = Field(min_length=1, description=f"The picture to describe: {MEDIA_FORMS}.")
    process_mode: ProcessMode | None = None
    bot_id: int | None = BotId


class SeedInput(_Loose):
    """The ``input`` of a Midjourney ``seed`` task."""

    origin_task_id: str = OriginTaskId


class BlendInput(_Loose):
    """The ``input`` of a Midjourney ``blend`` task."""

    image_urls: list[ImageInput] = Field(
        min_length=2, max_length=5, description=f"Two to five pictures to blend, each {MEDIA_FORMS}."
    )
    dimension: str | None = Field(default=None, max_length=20, description="The shape of the result.")
    process_mode: ProcessMode | None = None
    bot_id: int | None = BotId


class InpaintInput(_Loose):
    """The ``input`` of a Midjourney ``inpaint`` (vary region) task."""

    origin_task_id: str = OriginTaskId
    mask: str = Field(min_length=1, description="The region to redraw.")
    prompt: str | None = _prompt(False)
    skip_prompt_check: bool | None = SkipPromptCheck


class OutpaintInput(_Loose):
    """The ``input`` of a Midjourney ``outpaint`` (zoom out) task."""

    origin_task_id: str = OriginTaskId
    zoom_ratio: str = Field(min_length=1, max_length=10, description='How far to zoom out, e.g. "2".')
    prompt: str | None = _prompt(False)
    aspect_ratio: str | None = AspectRatio
    skip_prompt_check: bool | None = SkipPromptCheck


class PanInput(_Loose):
    """The ``input`` of a Midjourney ``pan`` task."""

    origin_task_id: str = OriginTaskId
    direction: str = Field(min_length=1, max_length=10, description="up, down, left or right.")
    prompt: str | None = _prompt(False)
    skip_prompt_check: bool | None = SkipPromptCheck


# --- Specs --------------------------------------------------------------------------------------------

#: The fields of PiAPI's Midjourney task-result page (``piapi-catalog.md`` §5.2): the grid, the four
#: splits twice, a Discord copy, progress and the actions it allows. URLs are placeholders.
MJ_OUTPUT: Final = {
    "image_url": "https://img.theapi.app/mj/0b3f6c2e-grid.png",
    "image_urls": [f"https://img.theapi.app/mj/0b3f6c2e-{n}.png" for n in range(1, 5)],
    "temporary_image_urls": [f"https://cdn.midjourney.com/0b3f6c2e/0_{n}.png" for n in range(4)],
    "discord_image_url": "https://cdn.discordapp.com/attachments/1/2/grid_0.png",
    "task_progress": 100,
    "actions": ["upscale1", "variation1", "reroll"],
    "seed": 1234567,
    "message": "",
}
_ORIGIN: Final = "0b3f6c2e-1111-4a4a-8b8b-000000000001"


def _spec(
    task_type: str,
    model_input: type[BaseModel],
    summary: str,
    example: dict[str, Any],
    *,
    output: Any = "image",
    output_example: Mapping[str, Any] = MJ_OUTPUT,
    parser: Any = parse_outputs,
) -> TaskSpec:
    return TaskSpec(
        model=MODEL,
        task_type=task_type,
        input=model_input,
        summary=f"{summary} (Midjourney; discontinued at PiAPI).",
        output=output,
        # No longer run; Midjourney fast-mode jobs took about a minute.
        typical_seconds=60.0,
        example=example,
        noun="image" if output == "image" else task_type,
        status="discontinued",
        output_example=output_example,
        parse_outputs=parser,
        # PiAPI reports a running Midjourney task's progress (0-100) in ``output.task_progress``.
        progress_field="task_progress",
        # Offered as soon as PiAPI runs Midjourney again (next actions on retired pairs are dropped).
        follow_ups=follow_ups if task_type in _GRID_TASK_TYPES else None,
    )


MJ_IMAGINE = _spec(
    "imagine", ImagineInput, "Create four pictures from a prompt", {"prompt": "a lighthouse at dusk"}
)
MJ_UPSCALE = _spec(
    "upscale", UpscaleInput, "Upscale one of a grid's pictures", {"origin_task_id": _ORIGIN, "index": "1"}
)
MJ_VARIATION = _spec(
    "variation",
    VariationInput,
    "Make variations of one of a grid's pictures",
    {"origin_task_id": _ORIGIN, "index": "2", "prompt": "a lighthouse at dusk"},
)
MJ_REROLL = _spec("reroll", RerollInput, "Run a grid's prompt again", {"origin_task_id": _ORIGIN})
MJ_DESCRIBE = _spec(
    "describe",
    DescribeInput,
    "Suggest prompts that describe a picture",
    {"image_url": "https://example.com/photo.png"},
    output="text",
    output_example={"description": "1\ufe0f\u20e3 a red lighthouse on a cliff at dusk --ar 1:1"},
)
MJ_SEED = _spec(
    "seed",
    SeedInput,
    "Read the seed of a task",
    {"origin_task_id": _ORIGIN},
    output="text",
    output_example={"seed": "1234567"},
    parser=parse_seed,
)
MJ_BLEND = _spec(
    "blend",
    BlendInput,
    "Blend two to five pictures",
    {"image_urls": ["https://example.com/a.png", "https://example.com/b.png"]},
)
MJ_INPAINT = _spec(
    "inpaint",
    InpaintInput,
    "Redraw a region of an upscaled picture",
    {"origin_task_id": _ORIGIN, "mask": "data-mask", "prompt": "a red door"},
)
MJ_OUTPAINT = _spec(
    "outpaint",
    OutpaintInput,
    "Zoom out of an upscaled picture",
    {"origin_task_id": _ORIGIN, "zoom_ratio": "2"},
)
MJ_PAN = _spec(
    "pan",
    PanInput,
    "Extend an upscaled picture in one direction",
    {"origin_task_id": _ORIGIN, "direction": "left"},
)

SPECS = (
    MJ_IMAGINE,
    MJ_UPSCALE,
    MJ_VARIATION,
    MJ_REROLL,
    MJ_DESCRIBE,
    MJ_SEED,
    MJ_BLEND,
    MJ_INPAINT,
    MJ_OUTPAINT,
    MJ_PAN,
)
