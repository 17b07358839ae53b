"""Udio (``music-u``): songs; its specs arrive with the full catalog.

Its output parser is here already: a Udio task makes ``songs[]`` (two per generation), each with
its audio at ``song_path`` (not ``audio_url``), its cover at ``image_path`` and its ``lyrics``
(``piapi-catalog.md`` §5.10).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from piapi_mcp.catalog._spec import TaskSpec
from piapi_mcp.models import OutputRef, text_output, url_output, walk_outputs

#: At most this many songs are read (Udio makes two per generation).
_MAX_SONGS = 16


def parse_outputs(output: Mapping[str, Any]) -> list[OutputRef]:
    """Every song's audio first (``#1`` is the first song), then their covers, then their lyrics as text.

    A task without ``songs`` falls back to the generic walk.
    """
    songs = output.get("songs")
    audio: list[OutputRef] = []
    covers: list[OutputRef] = []
    lyrics: list[OutputRef] = []
    for song in songs[:_MAX_SONGS] if isinstance(songs, list) else []:
        if not isinstance(song, Mapping):
            continue
        if (found := url_output(song.get("song_path"), "audio")) is not None:
            audio.append(found)
        if (found := url_output(song.get("image_path"), "image")) is not None:
            covers.append(found)
        if (found := text_output(song.get("lyrics"))) is not None:
            lyrics.append(found)
    found_all = [*audio, *covers, *lyrics]
    return found_all or walk_outputs(output)


SPECS: tuple[TaskSpec, ...] = ()
