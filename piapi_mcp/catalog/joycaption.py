"""Joycaption (``Qubico/joycaption``): a caption of a picture, returned as text.

Facts from PiAPI's Joycaption pages (``piapi-catalog.md`` §5.13): the documented example sends
``image``, ``prompt_style`` ("Descriptive"), ``caption_length`` ("any") and ``workflow_type``; the
output is ``output.text``. Ranges are not documented, so extra keys pass through.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import ImageInput, TaskInput, TaskSpec


class JoycaptionInput(TaskInput):
    """The ``input`` of a Joycaption ``joycaption-beta-one`` task."""

    model_config = ConfigDict(extra="allow")

    image: ImageInput = Field(
        min_length=1, description="The picture to describe: URL, local file or data: URI."
    )
    prompt_style: str | None = Field(default=None, description='Caption style, e.g. "Descriptive".')
    caption_length: str | None = Field(
        default=None, description='Caption length, e.g. "any", "short", "long".'
    )


JOYCAPTION = TaskSpec(
    model="Qubico/joycaption",
    task_type="joycaption-beta-one",
    input=JoycaptionInput,
    summary="Describe a picture in words (Joycaption).",
    output="text",
    # PiAPI's documented example ran 30.8 s from creation to end.
    typical_seconds=30.8,
    example={
        "image": "https://piapi.ai/workspace/flux/input_example.png",
        "prompt_style": "Descriptive",
        "caption_length": "any",
    },
    noun="caption",
    # The completed example of https://piapi.ai/docs/joycaption/get-task (shortened caption).
    output_example={
        "text": 'This is a vibrant, digitally-created photograph featuring the word "PIPI" made entirely '
        "from colorful, textured flower petals."
    },
)

SPECS = (JOYCAPTION,)
