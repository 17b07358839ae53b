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
from piapi_mcp.models import OutputRef, text_output, url_output, walk_outputs


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
