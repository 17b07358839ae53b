"""OmniHuman (``omni-human``/``omni-human-1.5``): a portrait that talks or sings to an audio file.

Thin (``piapi-catalog.md`` §5.8, Postman field names only): ``image_url``, ``audio_url``,
``prompt``, ``seed``, ``fast_mode``. Output not captured: PiAPI's newer proxies answer ``video``.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import AudioInput, ImageInput, TaskInput, TaskSpec


class OmniHumanInput(TaskInput):
    """The ``input`` of ``omni-human``/``omni-human-1.5``."""

    model_config = ConfigDict(extra="allow")

    image_url: ImageInput = Field(description="The person.")
    audio_url: AudioInput = Field(description="What they say or sing.")
    prompt: str | None = Field(default=None, max_length=4000)
    seed: int | None = None
    fast_mode: bool | None = None


OMNIHUMAN = TaskSpec(
    model="omni-human",
    task_type="omni-human-1.5",
    input=OmniHumanInput,
    summary="Make a portrait talk or sing to an audio file (OmniHuman 1.5).",
    output="video",
    typical_seconds=300.0,  # not documented
    example={"image_url": "https://example.com/face.png", "audio_url": "https://example.com/speech.mp3"},
    noun="video",
    output_example={"video": "https://img.theapi.app/ephemeral/omnihuman.mp4"},
)

SPECS = (OMNIHUMAN,)
