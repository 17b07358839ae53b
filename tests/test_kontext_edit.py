"""kontext_edit through the public MCP client, against the simulator on a manual clock."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult, ResourceLink, TextContent

from piapi_mcp import Fault, ManualClock, PiAPISimulator
from tests.conftest import API_KEY, Progress, make_server
from tests.helpers import TOOLS

pytestmark = pytest.mark.anyio

EDIT = {"prompt": "make the sky purple", "image": "https://example.com/photo.png"}


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def links_of(result: CallToolResult) -> list[ResourceLink]:
    return [block for block in result.content if isinstance(block, ResourceLink)]


async def test_edit_completes_with_image_link_task_link_and_structured_result(
    mcp_client: Client, simulator: PiAPISimulator, progress: Progress
) -> None:
    """A task that finishes within the budget returns the image as a resource_link and typed content."""
    result = await mcp_client.call_tool("kontext_edit", EDIT, progress_callback=progress)

    assert not result.is_error, text_of(result)
    data: dict[str, Any] = result.structured_content or {}
    task_id = data["task_id"]
    assert data["status"] == "completed" and data["done"] is True
    assert data["usage"]["consume"] == 200_000
    assert data["error"] is None and data["next"] is None
    image_url = data["outputs"][0]["url"]
    assert [(link.uri, link.mime_type) for link in links_of(result)] == [
        (image_url, "image/png"),
        (f"piapi://tasks/{task_id}", "application/json"),
    ]
    assert task_id in text_of(result) and image_url in text_of(result)
    assert simulator.tasks[task_id].input["prompt"] == EDIT["prompt"]


async def test_first_progress_message_carries_the_task_id_before_any_wait(
    mcp_client: Client, progress: Progress
) -> None:
    """The task id reaches the host in the very first progress notification."""
    result = await mcp_client.call_tool("kontext_edit", EDIT, progress_callback=progress)

    task_id = (result.structured_content or {})["task_id"]
    assert progress.seen, "no progress was reported"
    assert task_id in progress.messages[0]
    assert progress.seen[0][0] == 0.0
    values = [value for value, _, _ in progress.seen]
    assert values == sorted(values) and len(set(values)) == len(values), "progress must increase"


async def test_request_sent_to_piapi_is_the_kontext_model_dumped_with_defaults(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """PiAPI receives model Qubico/flux1-dev-advanced, task_type kontext and the validated input."""
    await mcp_client.call_tool("kontext_edit", {**EDIT, "steps": 12, "seed": 7, "wait_seconds": 0})

    (task,) = simulator.tasks.values()
    assert (task.model, task.task_type) == ("Qubico/flux1-dev-advanced", "kontext")
    assert task.input == {**EDIT, "steps": 12, "seed": 7, "width": 1024, "height": 1024}


async def test_progress_arrives_at_least_every_five_seconds_while_waiting(
    mcp_client: Client, simulator: PiAPISimulator, progress: Progress
) -> None:
    """A long wait keeps the host informed with status, elapsed time and an ETA."""
    simulator.controls.duration = 40

    await mcp_client.call_tool("kontext_edit", EDIT, progress_callback=progress)

    values = [value for value, _, _ in progress.seen]
    assert max(b - a for a, b in itertools.pairwise(values)) <= 5.0
    assert any("processing" in m and "elapsed" in m and "left" in m for m in progress.messages)


async def test_failed_task_is_a_tool_error_with_task_id_and_piapi_message(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """PiAPI's failure comes back as isError, keeping the id and PiAPI's own message."""
    simulator.controls.fail_tasks = True

    result = await mcp_client.call_tool("kontext_edit", EDIT)

    assert result.is_error
    (task_id,) = simulator.tasks
    assert task_id in text_of(result)
    assert "The image generation failed (simulated)." in text_of(result)
    assert (result.structured_content or {})["error"]["message"] == "The image generation failed (simulated)."


async def test_budget_exhausted_returns_a_handle_and_get_task_then_completes_it(
    mcp_client: Client, simulator: PiAPISimulator, clock: ManualClock
) -> None:
    """A 90 s task with a 45 s budget is not an error: it returns the id, and get_task finishes it."""
    simulator.controls.duration = 90
    start = clock.monotonic()

    first = await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 45})

    assert not first.is_error
    data = first.structured_content or {}
    assert data["done"] is False and data["status"] == "processing"
    assert clock.monotonic() - start <= 45
    assert "get_task" in data["next"] and data["task_id"] in data["next"]
    assert "not lost" in text_of(first)

    second = await mcp_client.call_tool("get_task", {"task_id": data["task_id"], "wait_seconds": 60})

    assert (second.structured_content or {})["status"] == "completed"
    assert links_of(second)[0].uri.endswith(".png")
    assert simulator.created_count == 1


async def test_host_cancelling_the_call_leaves_the_task_running_on_piapi(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """When the host gives up, the server stops waiting but does not cancel the paid task."""
    seen_ids: list[str] = []
    with anyio.CancelScope() as scope:

        async def cancel_on_first(progress: float, total: float | None, message: str | None) -> None:
            seen_ids.extend(simulator.tasks)
            scope.cancel()

        await mcp_client.call_tool("kontext_edit", EDIT, progress_callback=cancel_on_first)

    assert scope.cancelled_caught
    (task,) = simulator.tasks.values()
    assert seen_ids == [task.task_id]
    assert task.cancelled_at is None
    assert ("DELETE", f"/api/v1/task/{task.task_id}") not in simulator.requests
    assert (await mcp_client.call_tool("get_task", {"task_id": task.task_id})).is_error is False


@pytest.mark.parametrize(
    ("arguments", "field", "phrase"),
    [
        ({"image": EDIT["image"]}, "prompt", "is required"),
        ({**EDIT, "prompt": ""}, "prompt", "must not be empty"),
        ({**EDIT, "prompt": "   "}, "prompt", "must not be blank"),
        ({**EDIT, "steps": 41}, "steps", "at most 40"),
        ({**EDIT, "steps": 0}, "steps", "at least 1"),
        ({**EDIT, "image": ""}, "image", "must not be empty"),
        ({**EDIT, "width": "wide"}, "width", "whole number"),
        ({**EDIT, "wait_seconds": -1}, "wait_seconds", "at least 0"),
    ],
    ids=[
        "missing-prompt",
        "empty-prompt",
        "blank-prompt",
        "steps-high",
        "steps-low",
        "empty-image",
        "width-not-int",
        "negative-wait",
    ],
)
async def test_bad_arguments_are_one_sentence_tool_errors_naming_the_field(
    mcp_client: Client, simulator: PiAPISimulator, arguments: dict[str, Any], field: str, phrase: str
) -> None:
    """Invalid input never reaches PiAPI and the model is told which field to fix and how."""
    result = await mcp_client.call_tool("kontext_edit", arguments)

    assert result.is_error
    message = text_of(result)
    assert f"`{field}`" in message and phrase in message
    assert message.count("\n") == 0 and message.endswith(".")
    assert simulator.created_count == 0
    assert (await mcp_client.call_tool("kontext_edit", EDIT)).is_error is False


async def test_missing_api_key_lists_tools_and_explains_how_to_set_it(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """Without a key the server still works as an MCP server and each call says how to fix it."""
    async with Client(make_server(simulator, clock, http, api_key=None)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("kontext_edit", EDIT)

    assert names == TOOLS
    assert result.is_error
    assert "PIAPI_API_KEY" in text_of(result) and "--sandbox" in text_of(result)
    assert simulator.requests == []


@pytest.mark.parametrize(
    ("fault", "phrases"),
    [
        ({"status": 401}, ["rejected the API key", "PIAPI_API_KEY", "No task was created"]),
        (
            {"status": 429, "retry_after": "17", "times": 99},
            ["rate limiting", "after 17 s", "No task was created"],
        ),
        ({"status": 429, "times": 99}, ["rate limiting", "in a little while", "No task was created"]),
        ({"status": 500, "times": 99}, ["server error (HTTP 500)", "try again", "No task was created"]),
        ({"status": 502, "body": "html"}, ["may have created the task", "HTTP 502", "list_tasks"]),
        ({"status": 200, "body": "html"}, ["may have created the task", "JSON envelope", "list_tasks"]),
        ({"status": 200, "body": "truncated"}, ["may have created the task", "JSON envelope"]),
    ],
    ids=["401", "429-retry-after", "429-bare", "500", "502-html", "200-html", "200-truncated"],
)
async def test_upstream_errors_on_create_are_clear_tool_errors_without_secrets(
    mcp_client: Client, simulator: PiAPISimulator, fault: dict[str, Any], phrases: list[str]
) -> None:
    """PiAPI's refusals read as what happened and what to do; no key and no HTML leak out."""
    simulator.controls.faults.append(Fault(route="create", **fault))

    result = await mcp_client.call_tool("kontext_edit", EDIT)

    assert result.is_error
    message = text_of(result)
    for phrase in phrases:
        assert phrase in message
    assert API_KEY not in message and "<html" not in message
    simulator.controls.faults.clear()
    # After "may have created", the same edit needs force_new: the guard will not risk paying twice.
    assert (await mcp_client.call_tool("kontext_edit", {**EDIT, "force_new": True})).is_error is False


@pytest.mark.parametrize("fault", [{"status": 429}, {"status": 429, "retry_after": "3", "times": 2}])
async def test_a_create_refused_with_429_is_retried_and_creates_one_task(
    mcp_client: Client, simulator: PiAPISimulator, fault: dict[str, Any]
) -> None:
    """429 means PiAPI did not take the task, so trying again is safe and pays once."""
    simulator.controls.faults.append(Fault(route="create", **fault))

    result = await mcp_client.call_tool("kontext_edit", EDIT)

    assert not result.is_error
    assert simulator.created_count == 1
    assert simulator.requests.count(("POST", "/api/v1/task")) == 1 + fault.get("times", 1)


async def test_a_create_answered_by_a_gateway_error_is_never_sent_twice(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """A 502 page may hide a created task: the call says so instead of trying again."""
    simulator.controls.faults.append(Fault(route="create", status=502, body="html", times=99))

    result = await mcp_client.call_tool("kontext_edit", EDIT)

    assert result.is_error and "may have created the task" in text_of(result)
    assert simulator.requests.count(("POST", "/api/v1/task")) == 1


async def test_wrong_api_key_is_reported_without_echoing_it(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """A key PiAPI refuses gives a 401 sentence; the key itself appears nowhere."""
    wrong = "wrong-key-abcdef0123456789"
    async with Client(make_server(simulator, clock, http, api_key=wrong)) as client:
        result = await client.call_tool("kontext_edit", EDIT)

    assert result.is_error and "HTTP 401" in text_of(result)
    assert wrong not in result.model_dump_json()


async def test_passing_errors_while_waiting_are_retried_until_the_task_completes(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """A 503 or garbled answer during polling does not fail a task that was already paid for."""
    simulator.controls.faults += [Fault(route="get", status=503), Fault(route="get", status=200, body="html")]

    result = await mcp_client.call_tool("kontext_edit", EDIT)

    assert not result.is_error
    assert (result.structured_content or {})["status"] == "completed"


async def test_piapi_unreachable_while_waiting_returns_the_task_id_not_an_error(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """If every check fails until the budget ends, the id still comes back with a resume hint."""
    simulator.controls.faults.append(Fault(route="get", status=502, times=10_000))

    result = await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 20})

    assert not result.is_error
    data = result.structured_content or {}
    (task_id,) = simulator.tasks
    assert data["task_id"] == task_id and data["done"] is False
    assert "last check on it failed" in text_of(result)


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("envelope_code", 0),
        ("status_style", "upper"),
        ("status_style", "title"),
        ("output_key", "image_urls"),
        ("output_key", "temporary_image_urls"),
    ],
)
async def test_piapi_envelope_variants_are_understood(
    mcp_client: Client, simulator: PiAPISimulator, knob: str, value: object
) -> None:
    """code 0 or 200, any status case, and outputs in any of PiAPI's image fields all work."""
    setattr(simulator.controls, knob, value)

    result = await mcp_client.call_tool("kontext_edit", EDIT)

    data = result.structured_content or {}
    assert data["status"] == "completed" and data["done"] is True
    assert len(data["outputs"]) == 1 and data["outputs"][0]["url"].startswith("http://piapi.test/temp/")


async def test_output_image_link_serves_a_real_png(mcp_client: Client, http: httpx2.AsyncClient) -> None:
    """The simulator really produces the image the resource_link points at."""
    result = await mcp_client.call_tool("kontext_edit", EDIT)

    response = await http.get(links_of(result)[0].uri)
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG\r\n\x1a\n")
