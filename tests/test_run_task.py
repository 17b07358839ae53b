"""run_task: any PiAPI (model, task_type); a catalog entry's input validated and resolved, any other sent as given."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.types import ImageContent

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.catalog import CATALOG
from piapi_mcp.catalog.flux import FLUX_TXT2IMG
from tests.conftest import SIM_BASE_URL, make_server
from tests.helpers import EDIT, links_of, png_bytes, saving_client, text_of

pytestmark = pytest.mark.anyio

TXT2IMG = {"model": "Qubico/flux1-dev", "task_type": "txt2img"}


@pytest.fixture
async def creates(
    simulator: PiAPISimulator,
) -> AsyncIterator[tuple[list[dict[str, Any]], httpx2.AsyncClient]]:
    """An HTTP client to the simulator that records the body of every create it sends."""
    sent: list[dict[str, Any]] = []

    async def record(request: httpx2.Request) -> None:
        if request.method == "POST" and request.url.path == "/api/v1/task":
            sent.append(json.loads(request.content))

    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(simulator.app),
        base_url=SIM_BASE_URL,
        event_hooks={"request": [record]},
    ) as http:
        yield sent, http


async def test_a_catalog_task_completes_with_its_image_preview_and_links(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    """Flux text-to-image through run_task: validated input with the spec's fields, image saved and previewed."""
    async with saving_client(simulator, clock, http, tmp_path) as client:
        result = await client.call_tool("run_task", {**TXT2IMG, "input": {"prompt": "a red fox", "seed": 7}})

    assert not result.is_error, text_of(result)
    (task,) = simulator.tasks.values()
    assert (task.model, task.task_type) == ("Qubico/flux1-dev", "txt2img")
    # The spec's defaults are filled in; a key PiAPI documents thinly (seed) passes through.
    assert (task.input["prompt"], task.input["width"], task.input["seed"]) == ("a red fox", 1024, 7)
    assert (result.structured_content or {})["status"] == "completed"
    assert any(isinstance(block, ImageContent) for block in result.content), "no preview"
    assert any(link.mime_type == "image/png" for link in links_of(result))


async def test_a_catalog_entrys_media_fields_are_resolved_a_local_file_uploaded(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    """Kontext through run_task: its image, a local file, is uploaded and sent as a URL."""
    picture = png_bytes()
    async with saving_client(simulator, clock, http, tmp_path) as client:
        (tmp_path / "in" / "photo.png").write_bytes(picture)
        result = await client.call_tool(
            "run_task",
            {
                "model": "Qubico/flux1-dev-advanced",
                "task_type": "kontext",
                "input": {"prompt": "make it snow", "image": str(tmp_path / "in" / "photo.png")},
            },
        )

    assert not result.is_error, text_of(result)
    (task,) = simulator.tasks.values()
    assert list(simulator.uploads.values()) == [picture]
    assert task.input["image"].startswith("http://piapi.test/_uploads/")
    assert (task.input["steps"], task.input["seed"]) == (28, -1)


@pytest.mark.parametrize(
    ("task_input", "phrases"),
    [
        ({}, ["`input.prompt` is required"]),
        (
            {"prompt": " ", "width": 64},
            ["`input.prompt` must not be blank", "`input.width` must be at least 128"],
        ),
        (
            {"prompt": "a fox", "width": 2048, "height": 2048},
            ["`input.width` × `input.height` must be at most"],
        ),
        ({"prompt": "a fox", "guidance_scale": 9}, ["`input.guidance_scale` must be at most 5"]),
    ],
    ids=["missing", "blank-and-narrow", "area", "guidance"],
)
async def test_a_catalog_entrys_input_is_validated_in_one_sentence_naming_input_fields(
    mcp_client: Client, simulator: PiAPISimulator, task_input: dict[str, Any], phrases: list[str]
) -> None:
    """Bad input for a known pair is refused before anything is sent, each field named as input.<field>."""
    result = await mcp_client.call_tool("run_task", {**TXT2IMG, "input": task_input})

    message = text_of(result)
    assert result.is_error
    assert all(phrase in message for phrase in phrases), message
    assert message.count("\n") == 0 and message.endswith("call run_task again.")
    assert simulator.requests == []


async def test_an_unknown_pair_is_sent_as_given_for_piapi_to_judge(
    simulator: PiAPISimulator,
    clock: ManualClock,
    creates: tuple[list[dict[str, Any]], httpx2.AsyncClient],
    tmp_path: Path,
) -> None:
    """A pair the catalog lacks goes to PiAPI untouched: no validation, no defaults, no media resolution."""
    sent, http = creates
    local = tmp_path / "song.wav"
    local.write_bytes(b"RIFF")
    task_input = {"lyrics": "la la", "reference": str(local), "anything": [1, {"deep": None}]}
    async with Client(make_server(simulator, clock, http, allowed_dirs=[tmp_path])) as client:
        result = await client.call_tool(
            "run_task", {"model": "music-x", "task_type": "generate_music", "input": task_input}
        )

    assert sent == [{"model": "music-x", "task_type": "generate_music", "input": task_input}]
    assert simulator.uploads == {}
    # Today's simulator knows only the catalog, so it refuses the pair as PiAPI refuses a bad one.
    assert result.is_error and "No task was created" in text_of(result), text_of(result)


@pytest.mark.parametrize(
    ("arguments", "phrase"),
    [
        ({"model": "../../etc", "task_type": "txt2img", "input": {}}, "`model`"),
        ({"model": "Qubico/flux1-dev", "task_type": "txt 2 img", "input": {}}, "`task_type`"),
        ({"model": "Qubico/flux1-dev", "task_type": "txt2img", "input": ["prompt"]}, "`input`"),
        ({"model": "x", "task_type": "y", "input": {"prompt": "z" * 15_000_001}}, "more than the 15,000,000"),
    ],
    ids=["model", "task-type", "input-not-object", "input-too-big"],
)
async def test_model_task_type_and_input_are_checked_before_anything_is_sent(
    mcp_client: Client, simulator: PiAPISimulator, arguments: dict[str, Any], phrase: str
) -> None:
    """Strict identifier patterns and a JSON object of bounded size, refused in one sentence."""
    result = await mcp_client.call_tool("run_task", arguments)

    assert result.is_error and phrase in text_of(result), text_of(result)
    assert text_of(result).count("\n") == 0
    assert simulator.requests == []


async def test_a_discontinued_entry_is_refused_in_one_sentence_with_nothing_sent(
    mcp_client: Client, simulator: PiAPISimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spec whose status is not active stays listed, and a call says so before anything is sent."""
    retired = dataclasses.replace(FLUX_TXT2IMG, task_type="txt2img-old", status="discontinued", tool=None)
    monkeypatch.setitem(CATALOG._specs, retired.key, retired)

    result = await mcp_client.call_tool(
        "run_task", {"model": retired.model, "task_type": retired.task_type, "input": {"prompt": "x"}}
    )
    listing = json.loads((await mcp_client.read_resource("piapi://models")).contents[0].text)  # type: ignore[union-attr]

    message = text_of(result)
    assert result.is_error and "discontinued" in message and "nothing was sent" in message, message
    assert message.count("\n") == 0
    assert simulator.requests == []
    assert {"model": retired.model, "task_type": retired.task_type, "status": "discontinued"}.items() <= next(
        entry for entry in listing["models"] if entry["task_type"] == "txt2img-old"
    ).items()


async def test_the_same_request_again_reuses_the_task_across_run_task_and_the_typed_tool(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """The duplicate guard works on (model, task_type, input): run_task after kontext_edit pays nothing more."""
    first = await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
    again = await mcp_client.call_tool(
        "run_task",
        {"model": "Qubico/flux1-dev-advanced", "task_type": "kontext", "input": EDIT, "wait_seconds": 0},
    )

    assert simulator.created_count == 1
    assert (again.structured_content or {})["task_id"] == (first.structured_content or {})["task_id"]
    assert (again.structured_content or {})["reused"] is True
    assert "force_new=true" in text_of(again)


async def test_an_unfinished_run_returns_a_handle_that_get_task_completes_and_list_tasks_records(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """As for kontext_edit: the budget ends, the task id comes back with next; get_task finishes it."""
    pending = await mcp_client.call_tool(
        "run_task", {**TXT2IMG, "input": {"prompt": "a fox"}, "wait_seconds": 2}
    )
    data: dict[str, Any] = pending.structured_content or {}
    resumed = await mcp_client.call_tool("get_task", {"task_id": data["task_id"], "wait_seconds": 60})
    listed = await mcp_client.call_tool("list_tasks", {})

    assert not pending.is_error and data["done"] is False
    assert "get_task" in data["next"] and data["task_id"] in data["next"]
    assert (resumed.structured_content or {})["status"] == "completed"
    (entry,) = (listed.structured_content or {})["tasks"]
    assert (entry["tool"], entry["task_id"], entry["task_type"]) == ("run_task", data["task_id"], "txt2img")
    assert simulator.created_count == 1
