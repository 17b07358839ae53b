"""Trellis (``Qubico/trellis``, ``Qubico/trellis2``): a 3D model (GLB) from a picture or a text.

Facts from PiAPI's Trellis pages (``piapi-catalog.md`` §5.12): the create example echoes ``image``,
``images`` and ``seed`` (default 0) besides the sampling settings; PiAPI's MCP server sends ``image``,
its Postman collection ``images``. Ranges conflict between sources (the doc example uses 7 steps,
n8n bounds them to 10 to 50), so only what all agree on is checked and extra keys pass through.
Trellis 2 (https://piapi.ai/docs/trellis2-api/create-task) takes ``image`` and ``seed``; its create
example froze 1,000,000 units ($0.10). Trellis's own example 400,000 ($0.04).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._generate_3d import GENERATE_3D
from piapi_mcp.catalog._spec import MEDIA_FORMS, ImageInput, TaskInput, TaskSpec


class _SamplingSettings(TaskInput):
    model_config = ConfigDict(extra="allow")

    seed: int = Field(default=0, description="Random seed (default 0).")
    ss_sampling_steps: int | None = Field(default=None, ge=1, description="Sparse-structure sampling steps.")
    slat_sampling_steps: int | None = Field(
        default=None, ge=1, description="Structured-latent sampling steps."
    )
    ss_guidance_strength: float | None = Field(default=None, gt=0, description="Sparse-structure guidance.")
    slat_guidance_strength: float | None = Field(
        default=None, gt=0, description="Structured-latent guidance."
    )


class TrellisTextInput(_SamplingSettings):
    """The ``input`` of a Trellis ``text-to-3d`` task."""

    prompt: str = Field(
        min_length=1, max_length=2000, pattern=r"\S", description="The object to model, in words ('a bear')."
    )


class Trellis2Input(TaskInput):
    """The ``input`` of a Trellis 2 ``image-to-3d`` task."""

    model_config = ConfigDict(extra="allow")

    image: ImageInput = Field(min_length=1, description=f"The picture of the object: {MEDIA_FORMS}.")
    seed: int = Field(default=0, description="Random seed (default 0).")


class TrellisImageInput(TaskInput):
    """The ``input`` of a Trellis ``image-to-3d`` task."""

    model_config = ConfigDict(extra="allow")

    image: ImageInput | None = Field(
        default=None, description="The picture to turn into a 3D model: URL, local file or data: URI."
    )
    images: list[ImageInput] | None = Field(
        default=None, description="Several views of the object, instead of image."
    )
    seed: int = Field(default=0, description="Random seed (default 0).")
    ss_sampling_steps: int | None = Field(default=None, ge=1, description="Sparse-structure sampling steps.")
    slat_sampling_steps: int | None = Field(
        default=None, ge=1, description="Structured-latent sampling steps."
    )
    ss_guidance_strength: float | None = Field(default=None, gt=0, description="Sparse-structure guidance.")
    slat_guidance_strength: float | None = Field(
        default=None, gt=0, description="Structured-latent guidance."
    )


TRELLIS_IMAGE_TO_3D = TaskSpec(
    model="Qubico/trellis",
    task_type="image-to-3d",
    input=TrellisImageInput,
    summary="Turn a picture of an object into a 3D model (GLB) (Trellis).",
    output="model3d",
    # Not documented for Trellis; PiAPI's Pixal3D example (another 3D model) ran 4 min 16 s.
    typical_seconds=120.0,
    example={"image": "https://i.ibb.co/kgz3ZhwY/e053f0e939da.jpg"},
    noun="3D model",
    tool=GENERATE_3D,
    # No completed Trellis example is published: the three fields are those PiAPI's MCP server reads
    # (model_file, combined_video, no_background_image); the .glb on img.theapi.app/temp is the
    # form of the completed example of https://piapi.ai/docs/pixal-3d-api/create-task.
    output_example={
        "no_background_image": "https://img.theapi.app/temp/3c1f4f8e-6d55-4b7e-9f1e-1f0a8e2d4c11.png",
        "combined_video": "https://img.theapi.app/temp/3c1f4f8e-6d55-4b7e-9f1e-1f0a8e2d4c11.mp4",
        "model_file": "https://img.theapi.app/temp/b8c351a5-3895-491d-a9de-5c886b2e8c8b.glb",
    },
)

TRELLIS_TEXT_TO_3D = TaskSpec(
    model="Qubico/trellis",
    task_type="text-to-3d",
    input=TrellisTextInput,
    summary="Make a 3D model (GLB) of an object described in words (Trellis).",
    output="model3d",
    typical_seconds=120.0,
    # The create example of https://piapi.ai/docs/trellis-api/create-task.
    example={
        "prompt": "a bear",
        "ss_sampling_steps": 7,
        "slat_sampling_steps": 7,
        "ss_guidance_strength": 7.5,
        "slat_guidance_strength": 3,
    },
    noun="3D model",
    output_example=TRELLIS_IMAGE_TO_3D.output_example,
    price_usd=0.04,
)

TRELLIS2_IMAGE_TO_3D = TaskSpec(
    model="Qubico/trellis2",
    task_type="image-to-3d",
    input=Trellis2Input,
    summary="Turn a picture of an object into a detailed 3D model (GLB) (Trellis 2).",
    output="model3d",
    # Not documented; PiAPI's Pixal3D example, a model of the same size class, ran 4 min 16 s.
    typical_seconds=180.0,
    example={"image": "https://i.ibb.co/kgz3ZhwY/e053f0e939da.jpg", "seed": 0},
    noun="3D model",
    # Not captured (piapi-catalog.json: "output fields assumed same as Trellis").
    output_example=TRELLIS_IMAGE_TO_3D.output_example,
    price_usd=0.10,
)

SPECS = (TRELLIS_IMAGE_TO_3D, TRELLIS_TEXT_TO_3D, TRELLIS2_IMAGE_TO_3D)
