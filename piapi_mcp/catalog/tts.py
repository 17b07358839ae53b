"""F5-TTS (``Qubico/tts``): zero-shot text-to-speech in the voice of a reference recording.

Facts from PiAPI's F5-TTS page (``piapi-catalog.md`` §5.11): ``gen_text`` is required, at most
10,000 characters; ``ref_audio`` (URL or base64; 3 to 30 s of WAV/MP3/FLAC per the sister docs)
is required; ``ref_text`` is optional and transcribed when absent. ``speed``, ``remove_silence``
and ``custom_split_words`` appear only in PiAPI's Postman collection, so extra keys pass through.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import AudioInput, TaskInput, TaskSpec, ToolInfo


class TextToSpeechInput(TaskInput):
    """The ``input`` of an F5-TTS ``zero-shot`` task."""

    model_config = ConfigDict(extra="allow")

    gen_text: str = Field(
        min_length=1,
        max_length=10_000,
        pattern=r"\S",
        description="The text to speak.",
    )
    ref_audio: AudioInput = Field(
        min_length=1,
        description="The voice: 3-30 s of WAV, MP3 or FLAC (URL, local file, data: URI).",
    )
    ref_text: str | None = Field(
        default=None,
        description="What ref_audio says (transcribed when left out).",
    )


TTS_ZERO_SHOT = TaskSpec(
    model="Qubico/tts",
    task_type="zero-shot",
    input=TextToSpeechInput,
    summary="Read a text aloud in the voice of a short reference recording (F5-TTS).",
    output="audio",
    # Not documented by PiAPI; Qubico's sister doc answers a create with "estimated_time": 8.
    typical_seconds=8.0,
    example={"gen_text": "Hello from the PiAPI sandbox.", "ref_audio": "https://example.com/voice.wav"},
    noun="speech",
    tool=ToolInfo(
        name="text_to_speech",
        title="Read a text aloud (F5-TTS)",
        description=(
            "Read a text aloud in the voice of a short recording (ref_audio) with F5-TTS; the speech is "
            "saved and linked. Paid, about $0.025 per 1,000 characters; about 10 s."
        ),
    ),
    # No completed example is published; the output field is PiAPI's MCP server's (it reads
    # output.audio_url), the host and form are those of PiAPI's other outputs (img.theapi.app/temp).
    output_example={"audio_url": "https://img.theapi.app/temp/5b3c5a4e-0c2f-4f0b-9d0e-2f4c8d1f6a7b.wav"},
)

SPECS = (TTS_ZERO_SHOT,)
