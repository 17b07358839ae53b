"""Kling (``kling``, ``kling-turbo``): video; its specs arrive with the full catalog.

Its output parser is here already, because the generic walk reads the legacy shape wrongly: one
``works[]`` entry carries the video twice (``resource`` on Kling's signed CDN and
``resource_without_watermark`` on PiAPI's storage), often a third time as the top-level
``video_url``, and a cover image. Kling 3.0, omni and turbo answer with ``video`` alone
(``piapi-catalog.md`` §5.3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from piapi_mcp.catalog._spec import TaskSpec
from piapi_mcp.models import NextAction, OutputKind, OutputRef, Task, url_output, walk_outputs

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


SPECS: tuple[TaskSpec, ...] = ()


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
