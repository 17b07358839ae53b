"""Udio (``music-u``): songs (``generate_music``, which also extends a song) and lyrics (``generate_lyrics``).

Facts from PiAPI's Udio pages (``piapi-catalog.md`` §5.10): ``lyrics_type`` is required
(``generate``, ``user``, ``instrumental``); every documented example sends ``gpt_description_prompt``;
an extension adds ``continue_song_id`` and ``continue_at`` (each call adds about 32 s); $0.05 a
generation. A task makes ``songs[]`` (two per generation), each with its audio at ``song_path`` (not
``audio_url``), its cover at ``image_path`` and its ``lyrics``. ``generate_lyrics`` takes ``prompt``
and answers ``lyrics_pairs[]`` of ``title`` and ``text``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from piapi_mcp.catalog._spec import TaskInput, TaskSpec, ToolInfo
from piapi_mcp.models import OutputRef, text_output, url_output, walk_outputs

UDIO_MODEL = "music-u"
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


# --- generate_music (a new song, or the extension of one), generate_lyrics ---------------------------

LyricsType = Literal["generate", "user", "instrumental"]


class UdioMusicInput(TaskInput):
    """The ``input`` of a Udio ``generate_music`` task: a new song, or (``continue_song_id``) an extension.

    PiAPI's three documented modes all send ``gpt_description_prompt``: the song itself (``generate``,
    ``instrumental``) or its style (``user``, whose lyrics go in ``lyrics`` in PiAPI's example and in
    ``prompt`` in its schema; either is taken). Extra keys pass through: the docs are thin beyond this.
    """

    model_config = ConfigDict(extra="allow")

    lyrics_type: LyricsType = Field(
        description="generate: words written for you; user: your lyrics; instrumental: no vocals."
    )
    gpt_description_prompt: str | None = Field(
        default=None, description="The song (subject, genre, mood); its style with your own lyrics."
    )
    lyrics: str | None = Field(default=None, description="Your lyrics (lyrics_type user).")
    prompt: str | None = Field(default=None, description="Your lyrics, as PiAPI's schema names them.")
    negative_tags: str | None = Field(default=None, description="Styles to avoid, comma separated.")
    title: str | None = Field(default=None, description="The song's title.")
    seed: int | None = Field(default=None, description="Random seed; -1 picks one.")
    continue_song_id: str | None = Field(
        default=None, description="A Udio song id to extend (by about 32 s) instead of a new song."
    )
    continue_at: float | None = Field(default=None, ge=0, description="Second of that song to extend from.")

    @model_validator(mode="after")
    def _mode(self) -> UdioMusicInput:
        if self.lyrics_type == "user" and not (self.lyrics or self.prompt):
            raise PydanticCustomError("lyrics_missing", "`lyrics` is required with lyrics_type user")
        if self.lyrics_type != "user" and not self.gpt_description_prompt:
            raise PydanticCustomError(
                "description_missing",
                "`gpt_description_prompt` is required with lyrics_type {kind}",
                {"kind": self.lyrics_type},
            )
        if self.continue_at is not None and not self.continue_song_id:
            raise PydanticCustomError("extend_only", "`continue_at` applies only with `continue_song_id`")
        return self


class GenerateMusicArguments(TaskInput):
    """``generate_music``'s arguments: a description, and the lyrics or none (instrumental).

    A title, styles to avoid and extending a song go through ``run_task`` (each argument here costs every
    ``tools/list``).
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        min_length=1,
        pattern=r"\S",
        description="The song: subject, genre, mood ('upbeat ukulele jingle about coffee').",
    )
    lyrics: str | None = Field(
        default=None, description="Words to sing ([Verse], [Chorus]); prompt sets the style."
    )
    instrumental: bool = Field(default=False, description="No vocals.")

    @model_validator(mode="after")
    def _fits(self) -> GenerateMusicArguments:
        if self.instrumental and self.lyrics is not None:
            raise PydanticCustomError(
                "instrumental_lyrics",
                "`lyrics` and `instrumental` do not go together (an instrumental has no words)",
            )
        return self


def _route_music(arguments: BaseModel) -> tuple[TaskSpec, BaseModel]:
    """The documented mode of a generate_music call: the user's lyrics, an instrumental, or words written."""
    given = GenerateMusicArguments.model_validate(arguments.model_dump())
    kind = "user" if given.lyrics is not None else "instrumental" if given.instrumental else "generate"
    task_input = {
        "lyrics_type": kind,
        "gpt_description_prompt": given.prompt,
        "lyrics": given.lyrics,
    }
    return UDIO_MUSIC, UdioMusicInput.model_validate({k: v for k, v in task_input.items() if v is not None})


UDIO_MUSIC = TaskSpec(
    model=UDIO_MODEL,
    task_type="generate_music",
    input=UdioMusicInput,
    summary="Compose a song (two versions of about 32 s) from a description or lyrics, or extend one (Udio).",
    output="audio",
    # A real music-u webhook payload (piapi-catalog.md §5.10) ran 2 min 43 s.
    typical_seconds=163.0,
    example={"lyrics_type": "generate", "gpt_description_prompt": "night breeze, piano"},
    noun="song",
    price_usd=0.05,
    tool=ToolInfo(
        name="generate_music",
        title="Compose a song (Udio)",
        description=(
            "Compose a song with Udio from a description, your lyrics, or as an instrumental: two "
            "versions of about 30 s, audio saved and linked, lyrics as text. Paid, about $0.05; about 3 min."
        ),
        input=GenerateMusicArguments,
        route=_route_music,
    ),
    # The real music-u webhook payload summarised in piapi-catalog.md §5.10 (ids and URLs replaced).
    output_example={
        "generation_id": "9f8e7d6c",
        "songs": [
            {
                "id": f"song-{letter}",
                "title": "Night Breeze",
                "image_path": f"https://storage.googleapis.com/udio-artwork/song-{letter}.jpg",
                "song_path": f"https://storage.googleapis.com/udio-songs/song-{letter}.mp3",
                "lyrics": "[Verse]\nNight breeze over the keys",
                "duration": 32.8,
                "tags": ["piano"],
                "finished": True,
                "error_type": None,
                "error_code": None,
                "error_detail": None,
            }
            for letter in "ab"
        ],
    },
    parse_outputs=parse_outputs,
)


class UdioLyricsInput(TaskInput):
    """The ``input`` of a Udio ``generate_lyrics`` task (PiAPI documents ``prompt`` alone, required)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, pattern=r"\S", description="What the lyrics are about.")


UDIO_LYRICS = TaskSpec(
    model=UDIO_MODEL,
    task_type="generate_lyrics",
    input=UdioLyricsInput,
    summary="Write song lyrics about a subject, in two versions, as text (Udio).",
    output="text",
    # Not documented; a text task, far shorter than a song.
    typical_seconds=20.0,
    example={"prompt": "White egrets fly over the vast paddy fields"},
    noun="lyrics",
    # The response example of https://piapi.ai/docs/song-api/udio-generate-lyrics: ``lyrics_pairs[]``,
    # each a ``title`` and a ``text`` (the generic walk reads every ``text`` as a text output).
    output_example={
        "lyrics_pairs": [
            {"title": "Winter Wind", "text": "[Verse]\nSnowflakes falling skies so dim"},
            {"title": "Winter Wind", "text": "[Verse]\nSnowflakes dance and swirl on high"},
        ]
    },
)

SPECS = (UDIO_MUSIC, UDIO_LYRICS)
