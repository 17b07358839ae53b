"""``generate_3d``: the curated 3D tool over Trellis, from a picture (image-to-3d) or a text (text-to-3d).

The tool is declared on Trellis' image-to-3d spec (``catalog/trellis.py``); it lives here, apart from
that family's specs, and finds the spec of each call in the catalog when it is called, by pair name.
A pair the catalog lacks is refused in one sentence before anything is sent.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from piapi_mcp.catalog._spec import MEDIA_FORMS_SHORT, ImageInput, TaskInput, TaskSpec, ToolInfo

TRELLIS_MODEL: Final = "Qubico/trellis"
IMAGE_TO_3D: Final = (TRELLIS_MODEL, "image-to-3d")
TEXT_TO_3D: Final = (TRELLIS_MODEL, "text-to-3d")


class Generate3DArguments(TaskInput):
    """``generate_3d``'s arguments: a picture of the object, or a description of it."""

    model_config = ConfigDict(extra="forbid")

    image: ImageInput | None = Field(default=None, description=f"The object's picture: {MEDIA_FORMS_SHORT}.")
    prompt: str | None = Field(default=None, description="Or the object in words (text-to-3D).")

    @model_validator(mode="after")
    def _one_source(self) -> Generate3DArguments:
        if (self.image is None) == (self.prompt is None):
            raise PydanticCustomError(
                "one_source", "give exactly one of `image` and `prompt` (what to model)"
            )
        return self


def _route(arguments: BaseModel) -> tuple[TaskSpec, BaseModel]:
    """Image-to-3d for a picture, text-to-3d for a description: each spec looked up when called."""
    from piapi_mcp.catalog import CATALOG  # the catalog is built from the modules that import this one

    given = Generate3DArguments.model_validate(arguments.model_dump())
    pair, task_input = (
        (IMAGE_TO_3D, {"image": given.image}) if given.image else (TEXT_TO_3D, {"prompt": given.prompt})
    )
    spec = CATALOG.find(*pair)
    if spec is None:
        raise ValidationError.from_exception_data(
            "generate_3d",
            [
                {
                    "type": PydanticCustomError(
                        "not_in_catalog",
                        "this server's catalog has no {model} {task_type}, so a 3D model from "
                        "{source} cannot be made here (nothing was sent)",
                        {
                            "model": pair[0],
                            "task_type": pair[1],
                            "source": "a picture" if given.image else "a text",
                        },
                    ),
                    "loc": (),
                    "input": None,
                }
            ],
        )
    return spec, spec.input.model_validate(task_input)


GENERATE_3D: Final = ToolInfo(
    name="generate_3d",
    title="Make a 3D model (Trellis)",
    description=(
        "Turn a picture of an object, or a text description, into a 3D model (GLB) with Trellis; saved and "
        "linked, with a preview of the cut-out. Paid, about $0.04; about 2 min."
    ),
    input=Generate3DArguments,
    route=_route,
)
