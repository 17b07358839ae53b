"""The simulator's own task list tells a benchmark when each task ends and which webhooks it sent."""

from __future__ import annotations

import httpx2
import pytest
from mcp import Client

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.tasks import WebhookTarget
from tests.conftest import make_server

pytestmark = pytest.mark.anyio

EDIT = {"prompt": "a listed edit", "image": "https://example.com/in.png", "wait_seconds": 60}
ENDPOINT = "https://mcp.example.test/webhooks/piapi"


async def test_the_task_list_gives_each_task_its_end_time_and_the_webhooks_sent(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    received: list[str] = []

    async def post(endpoint: str, headers: dict[str, str], body: bytes) -> int:
        received.append(endpoint)
        return 204

    server = make_server(simulator, clock, http, webhook=WebhookTarget(ENDPOINT, "listing-secret-0123456789"))
    async with simulator.sending_webhooks(post), Client(server) as client:
        created = clock.now().timestamp()
        done = await client.call_tool("kontext_edit", EDIT)
        task_id = (done.structured_content or {})["task_id"]
        task = simulator.tasks[task_id]
        await clock.sleep(5)  # past the end: the webhook is due
        listing = (await http.get("/_simulator/tasks")).json()
    (entry,) = listing["tasks"]
    assert entry["task_id"] == task_id
    assert entry["ends_at"] == pytest.approx(created + task.queue_seconds + task.duration, abs=1.0)
    assert entry["ends_at"] > created + 1
    (sent,) = listing["webhooks"]
    assert (sent["task_id"], sent["status"], sent["answer"]) == (task_id, "completed", 204)
    assert received == [ENDPOINT]
