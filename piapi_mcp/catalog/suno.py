"""Suno (``music-s``, ``suno``): PiAPI stopped the service; listed, and refused before anything is sent.

PiAPI's docs index lists "Suno (service stopped)" and "Sunsetting Suno", and its homepage says "we
do not provide Suno API service" (``piapi-catalog.md`` §5.10). Its task types remain in PiAPI's
Postman collection, whose field names are declared here, loosely. A music task's ``output.clips`` is
an object keyed by clip id, each clip with ``audio_url``, ``video_url``, ``image_url`` and
``image_large_url``: the generic walk reads it (PiAPI's own MCP server, parsing it as a list, never did).
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from piapi_mcp.catalog._spec import MEDIA_FORMS, AudioInput, OutputKind, TaskInput, TaskSpec


class _Loose(TaskInput):
    # Suno is stopped and was documented thinly: keys not declared here pass through.
    model_config = ConfigDict(extra="allow")


Description = Field(default=None, max_length=3000, description="The song to make, described in words.")
Lyrics = Field(default=None, max_length=3000, description="The lyrics (at most 3000 characters).")
Instrumental = Field(default=None, description="No vocals.")
Tags = Field(default=None, max_length=200, description='Style tags, e.g. "pop, upbeat".')
Title = Field(default=None, max_length=80, description="The song's title.")


class SunoMusicInput(_Loose):
    """The ``input`` of a ``music-s`` ``generate_music`` task: a song from a description."""

    gpt_description_prompt: str | None = Description
    make_instrumental: bool | None = Instrumental
    prompt: str | None = Lyrics


class SunoCustomMusicInput(_Loose):
    """The ``input`` of a ``music-s`` ``generate_music_custom`` task: a song from lyrics, or an extension."""

    prompt: str | None = Lyrics
    title: str | None = Title
    tags: str | None = Tags
    negative_tags: str | None = Field(default=None, max_length=200, description="Styles to avoid.")
    continue_clip_id: str | None = Field(default=None, max_length=128, description="A clip to extend.")
    continue_at: float | None = Field(default=None, ge=0, description="Second of that clip to extend from.")
    model_version: str | None = Field(default=None, max_length=40, description="Suno model version.")


class SunoLyricsInput(_Loose):
    """The ``input`` of a Suno lyrics task."""

    prompt: str = Field(min_length=1, max_length=3000, description="What the lyrics are about.")


class SunoConcatInput(_Loose):
    """The ``input`` of a ``music-s`` ``concat_music`` task: an extended clip joined into one song."""

    clip_id: str = Field(min_length=1, max_length=128, description="The last clip of an extension.")


class SunoUploadInput(_Loose):
    """The ``input`` of a ``music-s`` ``upload_audio`` task: a recording made a clip to extend."""

    audio_url: AudioInput = Field(min_length=1, description=f"The recording: {MEDIA_FORMS}.")


class SunoProxyMusicInput(_Loose):
    """The ``input`` of a ``suno`` ``music`` task (PiAPI's internal proxy)."""

    prompt: str | None = Lyrics
    gpt_description_prompt: str | None = Description
    make_instrumental: bool | None = Instrumental
    tags: str | None = Tags
    title: str | None = Title
    mv: str | None = Field(default=None, max_length=40, description="Suno model version.")


_CLIP: Final = "c1d2e3f4-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
#: The clip fields PiAPI's Suno pages and MCP server name (``piapi-catalog.md`` §5.10); ids and URLs
#: are placeholders.
SUNO_OUTPUT: Final = {
    "clips": {
        _CLIP: {
            "id": _CLIP,
            "title": "Morning Brew",
            "status": "complete",
            "model_name": "chirp-v3",
            "audio_url": f"https://cdn1.suno.ai/{_CLIP}.mp3",
            "video_url": f"https://cdn1.suno.ai/{_CLIP}.mp4",
            "image_url": f"https://cdn2.suno.ai/image_{_CLIP}.jpeg",
            "image_large_url": f"https://cdn2.suno.ai/image_large_{_CLIP}.jpeg",
            "metadata": {
                "prompt": "[Verse]\nSteam is rising from my cup",
                "tags": "jingle",
                "duration": 32.8,
            },
        }
    }
}
#: A lyrics task's output is not captured: Suno's own lyrics answer (a title and the text).
SUNO_LYRICS_OUTPUT: Final = {"title": "Morning Brew", "text": "[Verse]\nSteam is rising from my cup"}


def _spec(
    model: str,
    task_type: str,
    model_input: type[BaseModel],
    summary: str,
    example: dict[str, Any],
    output: OutputKind = "audio",
) -> TaskSpec:
    return TaskSpec(
        model=model,
        task_type=task_type,
        input=model_input,
        summary=f"{summary} (Suno; service stopped at PiAPI).",
        output=output,
        # No longer run; Suno songs took a minute or two.
        typical_seconds=90.0,
        example=example,
        noun="song" if output == "audio" else "lyrics",
        status="stopped",
        output_example=SUNO_OUTPUT if output == "audio" else SUNO_LYRICS_OUTPUT,
    )


_DESCRIBED = {"gpt_description_prompt": "a jingle about coffee"}

SPECS = (
    _spec("music-s", "generate_music", SunoMusicInput, "Make a song from a description", _DESCRIBED),
    _spec(
        "music-s",
        "generate_music_custom",
        SunoCustomMusicInput,
        "Make a song from lyrics and style tags, or extend a clip",
        {"prompt": "[Verse]\nSteam is rising from my cup", "tags": "jingle", "title": "Morning Brew"},
    ),
    _spec("music-s", "generate_lyrics", SunoLyricsInput, "Write song lyrics", {"prompt": "coffee"}, "text"),
    _spec(
        "music-s", "concat_music", SunoConcatInput, "Join an extended clip into one song", {"clip_id": _CLIP}
    ),
    _spec(
        "music-s",
        "upload_audio",
        SunoUploadInput,
        "Make a recording a clip to extend",
        {"audio_url": "https://example.com/song.mp3"},
    ),
    _spec("suno", "music", SunoProxyMusicInput, "Make a song from a description or lyrics", _DESCRIBED),
    _spec("suno", "lyrics", SunoLyricsInput, "Write song lyrics", {"prompt": "coffee"}, "text"),
)
