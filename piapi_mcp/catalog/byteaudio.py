"""ByteAudio (``byteaudio``): ByteDance's Seed Audio 1.0, speech and audio scenes from a text.

Known only from PiAPI's newest CLI catalog (``piapi-catalog.md`` §5.11: model ``byteaudio``, task
type ``seed-audio-1.0``, page ``byteaudio-api/seed-audio``); no field, price or output is published.
Only ``prompt`` is declared (the model's one required input on every host that serves it) and extra
keys pass through; the output is taken to be ``audio_url``.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import TaskInput, TaskSpec


class SeedAudioInput(TaskInput):
    """The ``input`` of a ByteAudio ``seed-audio-1.0`` task (other keys pass through to PiAPI)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(
        min_length=1, max_length=4000, pattern=r"\S", description="What to say or the audio scene to make."
    )


BYTEAUDIO_SEED_AUDIO = TaskSpec(
    model="byteaudio",
    task_type="seed-audio-1.0",
    input=SeedAudioInput,
    summary="Make speech or an audio scene from a text (ByteDance Seed Audio 1.0).",
    output="audio",
    # Not documented; a proxied speech model (F5-TTS's sister doc estimates 8 s, scenes run longer).
    typical_seconds=30.0,
    example={"prompt": "A calm narrator says: welcome to the sandbox."},
    noun="audio",
    # Not captured: the audio_url of PiAPI's other audio tasks.
    output_example={"audio_url": "https://img.theapi.app/ephemeral/8a9b0c1d-2e3f-4a5b-8c6d-7e8f9a0b1c2d.mp3"},
)

SPECS = (BYTEAUDIO_SEED_AUDIO,)
