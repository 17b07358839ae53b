"""Flux (``Qubico/flux1-dev``, ``Qubico/flux1-schnell``, ``Qubico/flux1-dev-advanced``): image tasks.

Facts from PiAPI's Flux pages (see ``piapi-catalog.md`` §5.1): Kontext takes ``prompt`` and
``image``, ``steps`` at most 40, ``seed`` -1 for random; its documented example ran 1 s queued plus
31 s.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from piapi_mcp.catalog._spec import ImageInput, TaskSpec, ToolInfo

KONTEXT_MODEL = "Qubico/flux1-dev-advanced"
KONTEXT_TASK_TYPE = "kontext"


class KontextInput(BaseModel):
    """The ``input`` of a PiAPI Flux Kontext task (model ``Qubico/flux1-dev-advanced``)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        min_length=1,
        max_length=4000,
        pattern=r"\S",
        description=(
            "What to change in the image, in plain words, e.g. 'make the sky purple' or "
            "'replace the word Piapi with Pineapple'. Describe the edit, not the whole picture."
        ),
    )
    image: ImageInput = Field(
        min_length=1,
        max_length=14_500_000,
        pattern=r"\S",
        description=(
            "The picture to edit (PNG, JPEG or WebP, at most 10 MB): a public http(s) URL; a local file "
            "path (absolute, ~ or file://) inside the allowed folders, which is uploaded to PiAPI for 24 h; "
            "a data: URI (base64); or piapi://tasks/{task_id} (or #2 for its second image) to edit an "
            "earlier result."
        ),
    )
    width: int = Field(
        default=1024,
        ge=128,
        le=2048,
        description="Width of the output image in pixels (128 to 2048; default 1024).",
    )
    height: int = Field(
        default=1024,
        ge=128,
        le=2048,
        description="Height of the output image in pixels (128 to 2048; default 1024).",
    )
    steps: int = Field(
        default=28,
        ge=1,
        le=40,
        description=(
            "Number of diffusion steps, 1 to 40 (PiAPI's maximum); more is slower and finer. Default 28."
        ),
    )
    seed: int = Field(
        default=-1,
        ge=-1,
        le=2**31 - 1,
        description="Random seed for reproducible results; -1 (the default) picks a random one.",
    )


KONTEXT = TaskSpec(
    model=KONTEXT_MODEL,
    task_type=KONTEXT_TASK_TYPE,
    input=KontextInput,
    summary="Edit a picture from a plain-language instruction (Flux Kontext).",
    output="image",
    # PiAPI's documented Kontext example ran 32.7 s from creation to end.
    typical_seconds=32.7,
    example={"prompt": "make the sky purple", "image": "https://example.com/photo.png"},
    noun="edit",
    tool=ToolInfo(
        name="kontext_edit",
        title="Edit an image (Flux Kontext)",
        description=(
            "Edit a picture with PiAPI's Flux Kontext from a plain-language instruction.\n\n"
            'Give the image and what to change ("make the sky purple", "remove the car"). Creates a '
            "PiAPI task (costs credits) and waits up to wait_seconds for the edited image, reporting "
            "progress; the first progress message carries the task id. If the task is still running when "
            "the wait ends, the result says so with its task_id: call get_task with that id to keep "
            "waiting. Do not call kontext_edit again for the same edit; that creates and pays for a "
            "second task."
        ),
    ),
    # The completed example of https://piapi.ai/docs/flux-api/kontext (page modified 2025-06-30).
    output_example={
        "image_base64": "",
        "image_url": "https://img.theapi.app/temp/10f0a646-6155-4938-bf50-76934c953e9c.png",
    },
)

SPECS = (KONTEXT,)
