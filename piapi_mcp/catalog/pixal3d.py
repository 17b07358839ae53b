"""Pixal3D (``Qubico/pixal3d``): a 3D model (GLB) from a picture.

Facts from PiAPI's Pixal3D page (https://piapi.ai/docs/pixal-3d-api/create-task): the request takes
``image`` and ``seed`` (0 in the example); the completed example answers ``output.model_file`` (a
.glb on img.theapi.app/temp), ran 4 min 16 s from creation to end and consumed 2,500,000 units
($0.25). Nothing else is documented, so extra keys pass through.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from piapi_mcp.catalog._spec import MEDIA_FORMS, ImageInput, TaskInput, TaskSpec


class Pixal3DInput(TaskInput):
    """The ``input`` of a Pixal3D ``image-to-3d`` task."""

    model_config = ConfigDict(extra="allow")

    image: ImageInput = Field(min_length=1, description=f"The picture of the object: {MEDIA_FORMS}.")
    seed: int = Field(default=0, description="Random seed (default 0).")


PIXAL3D_IMAGE_TO_3D = TaskSpec(
    model="Qubico/pixal3d",
    task_type="image-to-3d",
    input=Pixal3DInput,
    summary="Turn a picture of an object into an asset-ready 3D model (GLB) (Pixal3D).",
    output="model3d",
    # PiAPI's documented example ran 256.7 s from creation to end.
    typical_seconds=256.7,
    example={"image": "https://i.ibb.co/kgz3ZhwY/e053f0e939da.jpg", "seed": 0},
    noun="3D model",
    # The completed example of https://piapi.ai/docs/pixal-3d-api/create-task.
    output_example={"model_file": "https://img.theapi.app/temp/b8c351a5-3895-491d-a9de-5c886b2e8c8b.glb"},
    price_usd=0.25,
)

SPECS = (PIXAL3D_IMAGE_TO_3D,)
