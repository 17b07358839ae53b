"""Midjourney (``midjourney``): discontinued at PiAPI; its specs arrive with the full catalog.

Its output parser is here already, because the generic walk reads a Midjourney result wrongly: one
task lists the 2x2 grid (``image_url``), the four split images twice (``image_urls`` on PiAPI's
storage, ``temporary_image_urls`` on Midjourney's CDN), a Discord copy of the grid and, on some
plans, ``intermediate_image_urls`` (``piapi-catalog.md`` §5.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from piapi_mcp.catalog._spec import TaskSpec
from piapi_mcp.models import NextAction, OutputRef, Task, text_output, url_output, walk_outputs


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


SPECS: tuple[TaskSpec, ...] = ()


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
