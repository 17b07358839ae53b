"""Midjourney (discontinued) and Suno (stopped): listed with their status, refused in one sentence with nothing sent."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from mcp import Client

from piapi_mcp import PiAPISimulator
from piapi_mcp.catalog import CATALOG, TaskSpec
from tests.conftest import API_KEY
from tests.helpers import text_of

pytestmark = pytest.mark.anyio

RETIRED = [spec for spec in CATALOG.all() if spec.status != "active"]
MIDJOURNEY_TASK_TYPES = {
    "imagine",
    "upscale",
    "variation",
    "reroll",
    "describe",
    "seed",
    "blend",
    "inpaint",
    "outpaint",
    "pan",
}
SUNO_PAIRS = {
    ("music-s", "generate_music"),
    ("music-s", "generate_music_custom"),
    ("music-s", "generate_lyrics"),
    ("music-s", "concat_music"),
    ("music-s", "upload_audio"),
    ("suno", "music"),
    ("suno", "lyrics"),
}


def spec_id(spec: TaskSpec) -> str:
    return f"{spec.model}/{spec.task_type}"


async def models_listing(mcp_client: Client) -> list[dict[str, Any]]:
    contents = (await mcp_client.read_resource("piapi://models")).contents[0]
    entries: list[dict[str, Any]] = json.loads(contents.text)["models"]  # type: ignore[union-attr]
    return entries


def test_every_midjourney_task_type_is_discontinued_and_every_suno_pair_stopped() -> None:
    statuses = {spec.key: spec.status for spec in RETIRED}

    assert statuses == {
        **{("midjourney", task_type): "discontinued" for task_type in MIDJOURNEY_TASK_TYPES},
        **dict.fromkeys(SUNO_PAIRS, "stopped"),
    }


@pytest.mark.parametrize("spec", RETIRED, ids=spec_id)
async def test_a_retired_entry_is_refused_in_one_sentence_with_nothing_sent_or_recorded(
    spec: TaskSpec, mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """run_task with the entry's own valid example: one sentence naming the model and its status."""
    result = await mcp_client.call_tool(
        "run_task", {"model": spec.model, "task_type": spec.task_type, "input": dict(spec.example)}
    )
    listed = await mcp_client.call_tool("list_tasks", {})

    message = text_of(result)
    assert result.is_error, message
    assert spec.status in message and spec.model in message and "nothing was sent" in message, message
    assert "\n" not in message and message.endswith(".")
    assert simulator.requests == []
    assert (listed.structured_content or {})["tasks"] == []


@pytest.mark.parametrize("spec", RETIRED, ids=spec_id)
async def test_a_retired_entry_is_refused_even_when_its_input_would_not_validate(
    spec: TaskSpec, mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """The status is what matters: a wrong input gets the same sentence, not a validation error."""
    result = await mcp_client.call_tool(
        "run_task", {"model": spec.model, "task_type": spec.task_type, "input": {"unexpected": [1, 2]}}
    )

    message = text_of(result)
    assert result.is_error and spec.status in message and "nothing was sent" in message, message
    assert simulator.requests == []


async def test_piapi_models_lists_midjourney_and_suno_with_their_status_and_every_other_entry_active(
    mcp_client: Client,
) -> None:
    entries = await models_listing(mcp_client)

    status_of = {(entry["model"], entry["task_type"]): entry["status"] for entry in entries}
    assert {key: status_of[key] for key in SUNO_PAIRS} == dict.fromkeys(SUNO_PAIRS, "stopped")
    assert {task_type for (model, task_type), status in status_of.items() if model == "midjourney"} == (
        MIDJOURNEY_TASK_TYPES
    )
    assert {status for (model, _), status in status_of.items() if model == "midjourney"} == {"discontinued"}
    retired = {spec.key for spec in RETIRED}
    assert {status for key, status in status_of.items() if key not in retired} == {"active"}


async def test_a_retired_entry_still_publishes_its_schema_and_status(mcp_client: Client) -> None:
    """An agent reading piapi://models/midjourney/imagine learns the status before it tries."""
    contents = (await mcp_client.read_resource("piapi://models/midjourney/imagine")).contents[0]
    entry = json.loads(contents.text)  # type: ignore[union-attr]

    assert entry["status"] == "discontinued"
    assert "prompt" in entry["input_schema"]["properties"]


@pytest.mark.parametrize("spec", RETIRED, ids=spec_id)
async def test_the_simulator_refuses_a_create_of_a_retired_pair_as_no_longer_run(
    spec: TaskSpec, http: httpx2.AsyncClient, simulator: PiAPISimulator
) -> None:
    """A client that skips the catalog's refusal meets the simulator's: nothing is created, nothing charged."""
    answer = await http.post(
        "/api/v1/task",
        json={"model": spec.model, "task_type": spec.task_type, "input": dict(spec.example)},
        headers={"X-API-Key": API_KEY},
    )

    assert answer.status_code == 400
    assert spec.status in answer.json()["message"]
    assert simulator.created_count == 0
