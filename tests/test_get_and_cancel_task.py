"""get_task, cancel_task and the piapi://tasks/{task_id} resource through the MCP client."""

from __future__ import annotations

import json

import pytest
from mcp import Client
from mcp.types import TextResourceContents

from piapi_mcp import ManualClock, PiAPISimulator
from tests.test_kontext_edit import EDIT, text_of

pytestmark = pytest.mark.anyio


async def start_task(client: Client) -> str:
    result = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
    return str((result.structured_content or {})["task_id"])


async def test_get_task_answers_at_once_with_the_current_status(
    mcp_client: Client, simulator: PiAPISimulator, clock: ManualClock
) -> None:
    """Without wait_seconds, get_task reports the state now and how to keep waiting."""
    task_id = await start_task(mcp_client)
    before = clock.monotonic()

    result = await mcp_client.call_tool("get_task", {"task_id": task_id})

    data = result.structured_content or {}
    assert not result.is_error
    assert data["status"] == "pending" and data["done"] is False
    assert task_id in data["next"]
    assert clock.monotonic() == before


async def test_get_task_of_a_finished_task_returns_its_image(mcp_client: Client, clock: ManualClock) -> None:
    """A task finished while nobody waited is fetched complete, with its image link."""
    task_id = await start_task(mcp_client)
    clock.advance(60)

    result = await mcp_client.call_tool("get_task", {"task_id": task_id})

    data = result.structured_content or {}
    assert data["status"] == "completed" and data["outputs"]
    assert data["outputs"][0]["url"] in text_of(result)


async def test_get_task_with_an_unknown_id_says_no_such_task(mcp_client: Client) -> None:
    """An id PiAPI does not know is a tool error that says so."""
    result = await mcp_client.call_tool("get_task", {"task_id": "0000-not-a-task"})

    assert result.is_error
    assert "no such task" in text_of(result)


@pytest.mark.parametrize("task_id", ["../account/info", "a/b", "", "x" * 200, "id with spaces"])
async def test_get_task_refuses_ids_that_are_not_task_ids(
    mcp_client: Client, simulator: PiAPISimulator, task_id: str
) -> None:
    """A malformed id is rejected by the schema before any request is sent."""
    result = await mcp_client.call_tool("get_task", {"task_id": task_id})

    assert result.is_error and "`task_id`" in text_of(result)
    assert simulator.requests == []


async def test_cancel_of_a_pending_task_cancels_it(mcp_client: Client, simulator: PiAPISimulator) -> None:
    """PiAPI cancels a task that has not started; the result shows it cancelled."""
    task_id = await start_task(mcp_client)

    result = await mcp_client.call_tool("cancel_task", {"task_id": task_id})

    assert not result.is_error
    data = result.structured_content or {}
    assert data["status"] == "cancelled" and data["done"] is True
    assert simulator.tasks[task_id].cancelled_at is not None


async def test_cancel_of_a_processing_task_is_a_clear_tool_error(
    mcp_client: Client, simulator: PiAPISimulator, clock: ManualClock
) -> None:
    """PiAPI will not cancel a task already running, and the error says why and what next."""
    task_id = await start_task(mcp_client)
    clock.advance(3)

    result = await mcp_client.call_tool("cancel_task", {"task_id": task_id})

    assert result.is_error
    message = text_of(result)
    assert task_id in message and "only cancels tasks that are still pending" in message
    assert simulator.tasks[task_id].cancelled_at is None


async def test_cancel_of_an_unknown_task_says_no_such_task(mcp_client: Client) -> None:
    """Cancelling an id PiAPI does not know is a tool error, not a crash."""
    result = await mcp_client.call_tool("cancel_task", {"task_id": "missing-task"})

    assert result.is_error and "no such task" in text_of(result)


async def test_task_resource_is_the_normalised_task_as_json(mcp_client: Client, clock: ManualClock) -> None:
    """piapi://tasks/{id} reads the task's current state as JSON."""
    task_id = await start_task(mcp_client)
    clock.advance(60)

    contents = (await mcp_client.read_resource(f"piapi://tasks/{task_id}")).contents

    (content,) = contents
    assert isinstance(content, TextResourceContents) and content.mime_type == "application/json"
    task = json.loads(content.text)
    assert task["task_id"] == task_id and task["status"] == "completed" and task["outputs"]


async def test_task_resource_templates_are_listed(mcp_client: Client) -> None:
    """Hosts can discover the catalog-entry, task and task-image resource templates."""
    templates = (await mcp_client.list_resource_templates()).resource_templates

    assert sorted(t.uri_template for t in templates) == [
        "piapi://models/{+model}/{task_type}",
        "piapi://tasks/{task_id}",
        "piapi://tasks/{task_id}/outputs/{n}",
    ]
