"""DiffRhythm (``Qubico/diffrhythm``): a song from lyrics and a style (base: up to 95 s; full: a full song).

Facts from ``piapi-catalog.md`` §5.11 (GoAPI's sister docs' example): ``lyrics``, ``style_prompt``
(e.g. "pop") and ``style_audio`` (a reference recording); $0.02 per generation (consume 200,000).
No ranges or output are published, so extra keys pass through and the output is taken to be the
``audio_url`` PiAPI's other Qubico audio tasks answer with.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import MEDIA_FORMS, AudioInput, TaskInput, TaskSpec


class DiffRhythmInput(TaskInput):
    """The ``input`` of a DiffRhythm ``txt2audio-base`` or ``txt2audio-full`` task."""

    model_config = ConfigDict(extra="allow")

    lyrics: str | None = Field(
        default=None,
        max_length=10_000,
        description="The lyrics, optionally with [mm:ss.xx] time tags per line.",
    )
    style_prompt: str | None = Field(default=None, max_length=1000, description='The style, e.g. "pop".')
    style_audio: AudioInput | None = Field(
        default=None, min_length=1, description=f"A recording whose style to follow: {MEDIA_FORMS}."
    )


_OUTPUT = {"audio_url": "https://img.theapi.app/temp/2e9b4c1d-5f7a-4b3c-8d6e-0a1f2b3c4d5e.wav"}
_EXAMPLE: dict[str, Any] = {"lyrics": "[00:10.00]Morning light on the window", "style_prompt": "pop"}


def _spec(task_type: str, summary: str, seconds: float) -> TaskSpec:
    return TaskSpec(
        model="Qubico/diffrhythm",
        task_type=task_type,
        input=DiffRhythmInput,
        summary=summary,
        output="audio",
        typical_seconds=seconds,
        example=_EXAMPLE,
        noun="song",
        # Not captured (piapi-catalog.json: "field assumed"); the audio_url of PiAPI's Qubico audio tasks.
        output_example=_OUTPUT,
        price_usd=0.02,
    )


# Run times are not documented; DiffRhythm renders a song in tens of seconds, the full one longer.
DIFFRHYTHM_BASE = _spec(
    "txt2audio-base", "Make a short song (up to about 95 s) from lyrics and a style (DiffRhythm).", 60.0
)
DIFFRHYTHM_FULL = _spec(
    "txt2audio-full", "Make a full-length song from lyrics and a style (DiffRhythm).", 120.0
)

SPECS = (DIFFRHYTHM_BASE, DIFFRHYTHM_FULL)
