"""MMAudio (``Qubico/mmaudio``): a soundtrack for a silent video.

Facts from PiAPI's MMAudio page (``piapi-catalog.md`` §5.11, the page is marked "Developing"):
``prompt`` and ``video`` are required; ``negative_prompt``, ``steps`` and ``seed`` (the schema spells
it ``seeds``, its example, Postman and PiAPI's MCP server ``seed``: ``seed`` is used). The sister
docs bound ``prompt`` to 500 characters, ``negative_prompt`` to 200, ``steps`` to 20..50 (default 25)
and the video to an MP4 of at most 60 s. Price: $0.0005 per second, at most 30 s billed.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import MEDIA_FORMS, TaskInput, TaskSpec, VideoInput


class MMAudioInput(TaskInput):
    """The ``input`` of an MMAudio ``video2audio`` task."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(
        min_length=1, max_length=500, pattern=r"\S", description="The sound to make (at most 500 characters)."
    )
    video: VideoInput = Field(
        min_length=1, description=f"The video to score (MP4, at most 60 s): {MEDIA_FORMS}."
    )
    negative_prompt: str | None = Field(default=None, max_length=200, description="Sounds to keep out.")
    steps: int | None = Field(
        default=None, ge=20, le=50, description="Sampling steps (20 to 50, default 25)."
    )
    seed: int | None = Field(default=None, description="Random seed.")


MMAUDIO_VIDEO2AUDIO = TaskSpec(
    model="Qubico/mmaudio",
    task_type="video2audio",
    input=MMAudioInput,
    summary="Add matching sound to a silent video (MMAudio).",
    output="audio",
    # Not documented; a short clip's soundtrack, like F5-TTS's seconds, plus the video download.
    typical_seconds=30.0,
    example={"prompt": "waves on a pebble beach, gulls", "video": "https://example.com/beach.mp4"},
    noun="soundtrack",
    # No completed example is published; the field is PiAPI's MCP server's (output.audio_url).
    output_example={"audio_url": "https://img.theapi.app/temp/7d3e1b2a-9c4f-4e8d-b1a6-2f5c8e0d9a41.wav"},
    # $0.0005 per second, at most 30 s billed: the most one task costs.
    price_usd=0.015,
)

SPECS = (MMAUDIO_VIDEO2AUDIO,)
