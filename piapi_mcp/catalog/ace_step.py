"""ACE-Step (``Qubico/ace-step``): music from a style and lyrics, restyled, edited or extended.

Only PiAPI's Postman collection names the fields (``piapi-catalog.md`` §5.11, thin):
``txt2audio`` ``style_prompt``, ``lyrics``, ``negative_prompt``, ``duration``, ``style_audio``;
``audio2audio`` the same without ``duration``; ``edit`` ``audio``, ``style_prompt``, ``lyrics``,
``edit_style_prompt``, ``edit_lyrics``; ``extend`` ``audio``, ``style_prompt``, ``lyrics``,
``negative_prompt``, ``left_extend_duration``, ``right_extend_duration``. No ranges, price or output
are published: only the recording each task works on is required, extra keys pass through, and the
output is taken to be ``audio_url``.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from piapi_mcp.catalog._spec import MEDIA_FORMS, AudioInput, TaskInput, TaskSpec

MODEL: Final = "Qubico/ace-step"
StylePrompt = Field(
    default=None, max_length=1000, description='The style, e.g. "lo-fi hip hop, mellow piano".'
)
Lyrics = Field(default=None, max_length=10_000, description="The lyrics ([verse], [chorus] tags allowed).")
NegativePrompt = Field(default=None, max_length=1000, description="What to keep out.")


def _audio(description: str) -> Any:
    return Field(min_length=1, description=f"{description}: {MEDIA_FORMS}.")


class AceStepTextToAudioInput(TaskInput):
    """The ``input`` of an ACE-Step ``txt2audio`` task."""

    model_config = ConfigDict(extra="allow")

    style_prompt: str | None = StylePrompt
    lyrics: str | None = Lyrics
    negative_prompt: str | None = NegativePrompt
    duration: float | None = Field(default=None, gt=0, le=600, description="Seconds of music.")
    style_audio: AudioInput | None = Field(
        default=None, min_length=1, description=f"A recording whose style to follow: {MEDIA_FORMS}."
    )


class AceStepAudioToAudioInput(TaskInput):
    """The ``input`` of an ACE-Step ``audio2audio`` task: a recording restyled."""

    model_config = ConfigDict(extra="allow")

    style_audio: AudioInput = _audio("The recording to restyle")
    style_prompt: str | None = StylePrompt
    lyrics: str | None = Lyrics
    negative_prompt: str | None = NegativePrompt


class AceStepEditInput(TaskInput):
    """The ``input`` of an ACE-Step ``edit`` task: a recording's style or lyrics changed."""

    model_config = ConfigDict(extra="allow")

    audio: AudioInput = _audio("The recording to edit")
    style_prompt: str | None = Field(default=None, max_length=1000, description="Its style now.")
    lyrics: str | None = Field(default=None, max_length=10_000, description="Its lyrics now.")
    edit_style_prompt: str | None = Field(
        default=None, max_length=1000, description="The style it should have."
    )
    edit_lyrics: str | None = Field(default=None, max_length=10_000, description="The lyrics it should have.")


class AceStepExtendInput(TaskInput):
    """The ``input`` of an ACE-Step ``extend`` task: a recording made longer at either end."""

    model_config = ConfigDict(extra="allow")

    audio: AudioInput = _audio("The recording to extend")
    style_prompt: str | None = StylePrompt
    lyrics: str | None = Lyrics
    negative_prompt: str | None = NegativePrompt
    left_extend_duration: float | None = Field(
        default=None, ge=0, le=600, description="Seconds added before."
    )
    right_extend_duration: float | None = Field(
        default=None, ge=0, le=600, description="Seconds added after."
    )


def _spec(
    task_type: str, model_input: type[BaseModel], summary: str, example: dict[str, Any], noun: str
) -> TaskSpec:
    return TaskSpec(
        model=MODEL,
        task_type=task_type,
        input=model_input,
        summary=summary,
        output="audio",
        # Not documented; ACE-Step renders minutes of music in tens of seconds on a GPU.
        typical_seconds=60.0,
        example=example,
        noun=noun,
        # Not captured: the audio_url of PiAPI's Qubico audio tasks (MMAudio, F5-TTS).
        output_example={"audio_url": "https://img.theapi.app/temp/c4d5e6f7-0a1b-4c2d-9e3f-5a6b7c8d9e0f.wav"},
    )


ACE_STEP_TXT2AUDIO = _spec(
    "txt2audio",
    AceStepTextToAudioInput,
    "Make music from a style and lyrics (ACE-Step).",
    {"style_prompt": "upbeat synth pop", "lyrics": "[verse]\nCity lights are calling", "duration": 30},
    "track",
)
ACE_STEP_AUDIO2AUDIO = _spec(
    "audio2audio",
    AceStepAudioToAudioInput,
    "Restyle a recording from a style prompt (ACE-Step).",
    {"style_audio": "https://example.com/song.mp3", "style_prompt": "acoustic folk"},
    "track",
)
ACE_STEP_EDIT = _spec(
    "edit",
    AceStepEditInput,
    "Change a recording's style or lyrics (ACE-Step).",
    {"audio": "https://example.com/song.mp3", "style_prompt": "pop", "edit_style_prompt": "jazz"},
    "edit",
)
ACE_STEP_EXTEND = _spec(
    "extend",
    AceStepExtendInput,
    "Make a recording longer at its start or end (ACE-Step).",
    {"audio": "https://example.com/song.mp3", "style_prompt": "pop", "right_extend_duration": 20},
    "extension",
)

SPECS = (ACE_STEP_TXT2AUDIO, ACE_STEP_AUDIO2AUDIO, ACE_STEP_EDIT, ACE_STEP_EXTEND)
