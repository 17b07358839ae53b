"""Prompts: a few slash commands hosts offer, each telling the model which tool to call and how."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from mcp import Client
from mcp.types import TextContent

from tests.helpers import TOOLS

pytestmark = pytest.mark.anyio

#: Each prompt, with arguments a user would give it.
PROMPT_ARGUMENTS: dict[str, dict[str, str]] = {
    "edit_picture": {"picture": "https://example.com/photo.png", "change": "make the sky purple!"},
    "video_from_photo": {"photo": "https://example.com/photo.png", "motion": "the waves roll in slowly"},
    "make_song": {"about": "an upbeat ukulele jingle about coffee", "instrumental": "yes"},
}


async def _prompt_text(client: Client, name: str, arguments: dict[str, str]) -> str:
    prompt = await client.get_prompt(name, arguments)
    assert len(prompt.messages) == 1 and prompt.messages[0].role == "user"
    content = prompt.messages[0].content
    assert isinstance(content, TextContent)
    return content.text


def _tool_call(text: str) -> tuple[str, dict[str, Any]]:
    """The ``<tool> with {json}`` a prompt's text asks for."""
    match = re.search(r"\b(\w+) with \{", text)
    assert match is not None, text
    arguments, _ = json.JSONDecoder().raw_decode(text, match.end() - 1)
    return match.group(1), arguments


async def test_the_server_lists_a_few_prompts_with_described_arguments(mcp_client: Client) -> None:
    """prompts/list has the edit, video and song prompts; each argument is described, the main ones required."""
    listed = {prompt.name: prompt for prompt in (await mcp_client.list_prompts()).prompts}

    assert set(listed) == set(PROMPT_ARGUMENTS)
    for name, prompt in listed.items():
        assert prompt.title and prompt.description, name
        assert {argument.name for argument in prompt.arguments or []} == set(PROMPT_ARGUMENTS[name])
        for argument in prompt.arguments or []:
            assert argument.description, (name, argument.name)
        required = {argument.name for argument in prompt.arguments or [] if argument.required}
        assert required == set(PROMPT_ARGUMENTS[name]) - {"instrumental"}


@pytest.mark.parametrize("name", sorted(PROMPT_ARGUMENTS))
async def test_each_prompt_names_a_listed_tool_with_arguments_that_run(mcp_client: Client, name: str) -> None:
    """The tool call a prompt spells out is a real tool with valid arguments: calling it creates a task."""
    text = await _prompt_text(mcp_client, name, PROMPT_ARGUMENTS[name])
    tool, arguments = _tool_call(text)
    published = {listed.name: listed for listed in (await mcp_client.list_tools()).tools}

    assert tool in TOOLS and tool in published
    assert set(arguments) <= set(published[tool].input_schema["properties"])
    assert "get_task" in text and "do not create the task again" in text
    result = await mcp_client.call_tool(tool, arguments | {"wait_seconds": 0})
    assert not result.is_error, result
    assert (result.structured_content or {})["task_id"]


async def test_a_prompt_carries_the_users_words_into_the_arguments(mcp_client: Client) -> None:
    """The picture and the change go into the edit tool's arguments as given, with no doubled punctuation."""
    text = await _prompt_text(mcp_client, "edit_picture", PROMPT_ARGUMENTS["edit_picture"])
    _, arguments = _tool_call(text)

    assert set(arguments.values()) == {"https://example.com/photo.png", "make the sky purple!"}
    assert "purple! Call" in text
    assert not re.search(r"[.!?][.;,]", text), text


async def test_a_song_prompt_asks_for_an_instrumental_only_when_told(mcp_client: Client) -> None:
    """instrumental is optional: left out, the song has vocals; 'yes' asks for none."""
    with_vocals = _tool_call(await _prompt_text(mcp_client, "make_song", {"about": "rain"}))[1]
    without = _tool_call(await _prompt_text(mcp_client, "make_song", PROMPT_ARGUMENTS["make_song"]))[1]

    assert False in with_vocals.values() and True in without.values()


async def test_the_prompts_capability_is_advertised_with_prompts_behind_it(mcp_client: Client) -> None:
    """The server declares prompts only because it has some (never an empty capability)."""
    assert mcp_client.server_capabilities is not None
    assert mcp_client.server_capabilities.prompts is not None
    assert (await mcp_client.list_prompts()).prompts
