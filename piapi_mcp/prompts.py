"""A few prompts hosts offer their users (slash commands): each tells the model which tool to call, how.

The tool and argument names come from the catalog's tools themselves (a renamed tool or argument
fails at import, never silently in a prompt). Each prompt is one short user message.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from piapi_mcp.catalog._spec import ToolInfo
from piapi_mcp.catalog.flux import KONTEXT
from piapi_mcp.catalog.udio import UDIO_MUSIC
from piapi_mcp.catalog.video import GENERATE_VIDEO
from piapi_mcp.wording import ended


def _tool(
    info: ToolInfo | None, *arguments: str, spec_input: type[BaseModel] | None = None
) -> tuple[str, tuple[str, ...]]:
    """The tool's name and the argument names a prompt uses, checked against the tool's arguments.

    A tool's arguments are its own ``input``, else its spec's (``spec_input``).
    """
    assert info is not None
    model = info.input or spec_input
    assert model is not None
    missing = [name for name in arguments if name not in model.model_fields]
    if missing:
        raise RuntimeError(f"{info.name} has no argument(s) {', '.join(missing)}: a prompt needs updating")
    return info.name, arguments


#: (tool, (its arguments the prompt fills)) for each prompt.
EDIT_TOOL: Final = _tool(KONTEXT.tool, "prompt", "image", spec_input=KONTEXT.input)
VIDEO_TOOL: Final = _tool(GENERATE_VIDEO, "prompt", "start_image")
SONG_TOOL: Final = _tool(UDIO_MUSIC.tool, "prompt", "instrumental", spec_input=UDIO_MUSIC.input)

#: Every prompt ends with this: a slow task is resumed, never paid for twice.
WAIT_ADVICE: Final = (
    "If the result says the task is still running, call get_task with its task_id to keep waiting; "
    "do not create the task again."
)


def _call(tool: tuple[str, tuple[str, ...]], values: tuple[Any, ...]) -> str:
    """``name with {arguments as JSON}``."""
    name, arguments = tool
    return f"{name} with {json.dumps(dict(zip(arguments, values, strict=True)), ensure_ascii=False)}"


def add_prompts(server: MCPServer[Any]) -> None:
    """Register the prompts on ``server``."""

    @server.prompt(
        name="edit_picture",
        title="Edit this picture",
        description=f"Edit a picture from a plain-language instruction ({EDIT_TOOL[0]}).",
    )
    def edit_picture(
        picture: Annotated[str, Field(description="The picture: a local file path or an http(s) URL.")],
        change: Annotated[str, Field(description="What to change, e.g. 'make the sky purple'.")],
    ) -> str:
        return (
            f"Edit the picture {picture}: {ended(change)} Call the tool "
            f"{_call(EDIT_TOOL, (change, picture))}, then show me the result. {WAIT_ADVICE}"
        )

    @server.prompt(
        name="video_from_photo",
        title="Make a video from this photo",
        description=f"Animate a photo into a short video ({VIDEO_TOOL[0]}).",
    )
    def video_from_photo(
        photo: Annotated[str, Field(description="The photo: a local file path or an http(s) URL.")],
        motion: Annotated[str, Field(description="What moves and how, e.g. 'the waves roll in slowly'.")],
    ) -> str:
        return (
            f"Make a short video from the photo {photo}: {ended(motion)} Call the tool "
            f"{_call(VIDEO_TOOL, (motion, photo))}. Videos take minutes. {WAIT_ADVICE}"
        )

    @server.prompt(
        name="make_song",
        title="Make a song",
        description=f"Compose a song from a description ({SONG_TOOL[0]}).",
    )
    def make_song(
        about: Annotated[str, Field(description="The song: subject, genre, mood.")],
        instrumental: Annotated[str, Field(description="'yes' for no vocals.")] = "no",
    ) -> str:
        no_vocals = instrumental.strip().lower() in ("yes", "true", "y", "1")
        return (
            f"Compose a song: {ended(about)} Call the tool {_call(SONG_TOOL, (about, no_vocals))}, "
            f"then give me the links to the audio. {WAIT_ADVICE}"
        )
