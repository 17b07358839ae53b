"""Follow-up actions: a completed result lists what PiAPI can do next with its outputs, as run_task arguments.

Each family declares them on its spec (``TaskSpec.follow_ups``): an image is upscaled by PiAPI's
image toolkit, a Kling video extended, a Midjourney grid upscaled or varied by index.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client

from piapi_mcp import PiAPISimulator
from piapi_mcp.catalog import CATALOG, kling, midjourney
from piapi_mcp.models import parse_task
from tests.helpers import EDIT, text_of

pytestmark = pytest.mark.anyio

UPSCALE = ("Qubico/image-toolkit", "upscale")


async def test_a_completed_edit_offers_an_upscale_of_its_image_ready_for_run_task(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """The Kontext edit's image → image-toolkit upscale, naming the output as run_task can take it.

    A pair the catalog knows gets ``piapi://tasks/{id}#1`` (resolved before the create); one it does
    not know yet is sent as given, so it gets the output's URL.
    """
    result = await mcp_client.call_tool("kontext_edit", EDIT)

    data = result.structured_content or {}
    assert data["status"] == "completed", text_of(result)
    (action,) = data["next_actions"]
    assert (action["model"], action["task_type"]) == UPSCALE
    expected_image = (
        data["outputs"][0]["url"] if CATALOG.find(*UPSCALE) is None else f"piapi://tasks/{data['task_id']}#1"
    )
    assert action["input"] == {"image": expected_image, "scale": 2}
    assert action["label"] == "Upscale the image (2x)"
    arguments = {"model": action["model"], "task_type": action["task_type"], "input": action["input"]}
    assert f"Next, with run_task:\n- {action['label']}: {json.dumps(arguments, separators=(',', ':'))}" in (
        text_of(result)
    )


async def test_a_task_still_running_offers_no_next_action_but_its_estimate(mcp_client: Client) -> None:
    """Nothing to follow up before there is an output; the listed price is known from the start."""
    result = await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

    data = result.structured_content or {}
    assert (data["done"], data["next_actions"], data["estimated_usd"]) == (False, [], 0.02)


async def test_get_task_offers_the_same_next_actions(mcp_client: Client) -> None:
    """A later look at the task (get_task) offers what the creating call offered."""
    created = await mcp_client.call_tool("kontext_edit", EDIT)
    task_id = (created.structured_content or {})["task_id"]

    looked = await mcp_client.call_tool("get_task", {"task_id": task_id})

    assert (looked.structured_content or {})["next_actions"] == (created.structured_content or {})[
        "next_actions"
    ]


async def test_next_actions_cost_a_bare_array_in_the_published_schema(mcp_client: Client) -> None:
    """Every task tool repeats the result schema: the actions' shape is said by the result, not by it."""
    tools = (await mcp_client.list_tools()).tools
    schema = next(tool for tool in tools if tool.name == "get_task").output_schema or {}

    assert schema["properties"]["next_actions"] == {"type": "array"}
    assert schema["properties"]["cost_usd"] == {"type": ["number", "null"]}


def kling_task(**changes: Any) -> Any:
    """A completed Kling video task in PiAPI's legacy ``works[]`` shape, with ``changes`` to its data."""
    data: dict[str, Any] = {
        "task_id": "kling-1",
        "model": "kling",
        "task_type": "video_generation",
        "status": "completed",
        "input": {"prompt": "a cat surfing", "version": "2.1"},
        "output": {
            "works": [
                {
                    "video": {"resource_without_watermark": "https://storage.theapi.app/videos/1.mp4"},
                    "cover": {"resource": "https://storage.theapi.app/covers/1.png"},
                }
            ]
        },
    }
    return parse_task({**data, **changes})


def test_a_kling_video_offers_its_extension_by_origin_task_id() -> None:
    """Kling's extend_video takes the task itself, not its file."""
    (action,) = kling.follow_ups(kling_task())

    assert (action.model, action.task_type, action.input) == (
        "kling",
        "extend_video",
        {"origin_task_id": "kling-1"},
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"input": {"prompt": "a cat", "version": "1.5"}},  # Kling cannot extend 1.5 videos
        {"task_type": "lip_sync_extra"},  # not a generated or extended video
        {"output": {"works": []}},  # no video
    ],
)
def test_a_kling_task_that_cannot_be_extended_offers_nothing(changes: dict[str, Any]) -> None:
    """Only what PiAPI can extend is offered."""
    assert kling.follow_ups(kling_task(**changes)) == []


def midjourney_task(prompt: str | None) -> Any:
    """A completed Midjourney imagine with its four splits and grid."""
    splits = [f"https://img.theapi.app/mj/split-{n}.png" for n in range(1, 5)]
    return parse_task(
        {
            "task_id": "mj-1",
            "model": "midjourney",
            "task_type": "imagine",
            "status": "completed",
            "input": {"prompt": prompt} if prompt else {},
            "output": {"image_url": "https://img.theapi.app/mj/grid.png", "image_urls": splits},
        }
    )


def test_a_midjourney_grid_offers_upscales_variations_and_a_reroll_by_index() -> None:
    """U1-U4 and V1-V4 as PiAPI numbers them (strings), the prompt carried over where PiAPI needs it."""
    actions = midjourney.follow_ups(midjourney_task("a castle"))

    upscales = [a.input for a in actions if a.task_type == "upscale"]
    variations = [a.input for a in actions if a.task_type == "variation"]
    assert upscales == [{"origin_task_id": "mj-1", "index": str(n)} for n in range(1, 5)]
    assert variations == [
        {"origin_task_id": "mj-1", "index": str(n), "prompt": "a castle"} for n in range(1, 5)
    ]
    assert [a.task_type for a in actions].count("reroll") == 1
    assert all(a.model == "midjourney" for a in actions)


def test_a_midjourney_grid_without_its_prompt_offers_only_upscales() -> None:
    """Variation and reroll need the prompt; without it they are not offered half-filled."""
    actions = midjourney.follow_ups(midjourney_task(None))

    assert [a.label for a in actions] == [f"Upscale image {n} (U{n})" for n in range(1, 5)]
