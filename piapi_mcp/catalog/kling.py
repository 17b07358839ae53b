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
from piapi_mcp.models import OutputKind, OutputRef, url_output, walk_outputs

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
