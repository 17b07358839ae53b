"""PiAPI webhooks: the simulator pushes task ends to the hosted app's /webhooks/piapi, which wakes the wait.

Everything runs in process on the ManualClock: the simulator posts through an ``httpx2`` client whose
transport is the hosted ASGI app, the MCP client talks to the server in memory.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.cli import build_parser, serve
from piapi_mcp.config import Config
from piapi_mcp.events import LocalTaskEvents
from piapi_mcp.hosting import MAX_WEBHOOK_BYTES, WEBHOOK_PATH, WebhookReceiver, build_http_app
from piapi_mcp.ledger import TaskLedger
from piapi_mcp.loopback import serve_app_on_loopback
from piapi_mcp.simulator import httpx_poster
from piapi_mcp.tasks import WebhookTarget
from tests.conftest import API_KEY, make_server

pytestmark = pytest.mark.anyio

SECRET = "whsec-Tq9v2LxK4mZr8pWc3NdY"
PUBLIC = "http://mcp.test"
ENDPOINT = f"{PUBLIC}{WEBHOOK_PATH}"
EDIT = {"prompt": "make the sky purple", "image": "https://example.com/in.png"}


@dataclass
class Deployment:
    """One hosted server over the simulator, with its webhook route reachable by the simulator."""

    client: Client
    hooks: httpx2.AsyncClient
    receiver: WebhookReceiver
    events: LocalTaskEvents
    ledger: TaskLedger
    ledger_path: Path


@asynccontextmanager
async def deployment(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state: Path, *, webhooks: bool
) -> AsyncIterator[Deployment]:
    """A server whose creates ask for webhooks (or not), with the simulator delivering them in process."""
    path = state / "tasks.sqlite3"
    ledger = TaskLedger.open(path, clock=clock)
    events = LocalTaskEvents()
    target = WebhookTarget(ENDPOINT, SECRET) if webhooks else None
    server = make_server(simulator, clock, http, ledger=ledger, events=events, webhook=target)
    receiver = WebhookReceiver(SECRET, ledger, events)
    app = build_http_app(server, "streamable-http", webhooks=receiver)
    try:
        async with (
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=PUBLIC) as hooks,
            simulator.sending_webhooks(httpx_poster(hooks)),
            Client(server, raise_exceptions=True) as client,
        ):
            yield Deployment(client, hooks, receiver, events, ledger, path)
    finally:
        ledger.close()


def _result(done: CallToolResult) -> dict[str, Any]:
    data: dict[str, Any] | None = done.structured_content
    text = "\n".join(block.text for block in done.content if isinstance(block, TextContent))
    assert data is not None, text
    return data


def _polls(simulator: PiAPISimulator, task_id: str) -> int:
    return simulator.requests.count(("GET", f"/api/v1/task/{task_id}"))


async def _timed_edit(
    client: Client, clock: ManualClock, simulator: PiAPISimulator
) -> tuple[str, float, int]:
    """One edit of a 29.5 s task (1 s queued): its id, how long after its end it was known, and polls."""
    created = clock.monotonic()
    done = _result(await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 120}))
    assert (done["status"], done["done"]) == ("completed", True)
    task = simulator.tasks[done["task_id"]]
    end = created + task.queue_seconds + task.duration
    return done["task_id"], clock.monotonic() - end, _polls(simulator, done["task_id"])


async def _hook(
    hooks: httpx2.AsyncClient, data: Any, *, secret: str | None = SECRET, method: str = "POST"
) -> httpx2.Response:
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["x-webhook-secret"] = secret
    body = data if isinstance(data, bytes) else json.dumps({"timestamp": 1760751955, "data": data}).encode()
    return await hooks.request(method, WEBHOOK_PATH, headers=headers, content=body)


async def _created(dep: Deployment, simulator: PiAPISimulator, prompt: str = "make it night") -> str:
    """A task created with no wait: it is still running, and the ledger knows it."""
    started = _result(
        await dep.client.call_tool("kontext_edit", {**EDIT, "prompt": prompt, "wait_seconds": 0})
    )
    assert started["done"] is False
    task_id: str = started["task_id"]
    return task_id


async def _task_data(http: httpx2.AsyncClient, task_id: str, **changes: Any) -> dict[str, Any]:
    """The task as PiAPI's get answers it (what a webhook's ``data`` is), with ``changes``."""
    answer = await http.get(f"/api/v1/task/{task_id}", headers={"x-api-key": API_KEY})
    data: dict[str, Any] = answer.json()["data"]
    return {**data, **changes}


async def test_a_webhook_ends_a_waiting_call_at_the_task_end_with_fewer_polls_than_polling_alone(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    """The call learns the end when the webhook lands, before the next poll, and polls less meanwhile."""
    simulator.controls.duration = 29.5
    async with deployment(simulator, clock, http, tmp_path / "a", webhooks=False) as polling:
        _, polled_lag, polled_polls = await _timed_edit(polling.client, clock, simulator)
    async with deployment(simulator, clock, http, tmp_path / "b", webhooks=True) as pushed:
        task_id, pushed_lag, pushed_polls = await _timed_edit(pushed.client, clock, simulator)
        assert pushed.receiver.taken == 1
        assert [(hook.task_id, hook.status, hook.answer) for hook in simulator.webhooks] == [
            (task_id, "completed", 200)
        ]
    assert pushed_lag == pytest.approx(0.0, abs=1e-6)
    assert polled_lag > 0.4
    assert pushed_polls < polled_polls


async def test_a_dropped_webhook_still_ends_the_call_by_polling(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """With every webhook lost, the result still arrives, by the slower fallback polling."""
    simulator.controls.duration = 29.5
    simulator.controls.drop_webhooks = True
    async with deployment(simulator, clock, http, state_dir, webhooks=True) as dep:
        task_id, lag, polls = await _timed_edit(dep.client, clock, simulator)
        assert dep.receiver.taken == 0
    assert [(hook.task_id, hook.answer) for hook in simulator.webhooks] == [(task_id, None)]
    assert 0 < lag <= 4.0  # within one fallback interval (twice the 2 s of polling alone)
    assert polls >= 2


async def test_a_webhook_without_the_right_secret_is_refused_and_changes_nothing(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """A missing, wrong, repeated or case-changed secret gets 401; the ledger and the waiters see nothing."""
    simulator.controls.duration = 600
    async with deployment(simulator, clock, http, state_dir, webhooks=True) as dep:
        task_id = await _created(dep, simulator)
        before = await dep.ledger.get(task_id)
        assert before is not None and before.status == "pending"
        finished = await _task_data(http, task_id, status="completed")
        for secret in (None, "", "wrong", SECRET.upper(), SECRET + "x", SECRET[:-1]):
            answer = await _hook(dep.hooks, finished, secret=secret)
            assert answer.status_code == 401, secret
            assert SECRET not in answer.text
        repeated = await dep.hooks.post(
            WEBHOOK_PATH,
            headers=[("x-webhook-secret", SECRET), ("x-webhook-secret", SECRET)],
            content=json.dumps({"timestamp": 1, "data": finished}).encode(),
        )
        assert repeated.status_code == 401
        assert (await _hook(dep.hooks, finished, method="GET")).status_code == 405
        after = await dep.ledger.get(task_id)
        assert after is not None and after.status == "pending"
        assert dep.events.notified == 0 and dep.receiver.taken == 0


async def test_a_webhook_for_a_task_this_deployment_did_not_create_is_ignored(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """The answer is the same 200 as for a known task (it tells nothing), and nothing is recorded or woken."""
    simulator.controls.duration = 600
    async with deployment(simulator, clock, http, state_dir, webhooks=True) as dep:
        known = await _created(dep, simulator)
        stranger = "0f8fad5b-d9cb-469f-a165-70867728950e"
        answer = await _hook(dep.hooks, {**await _task_data(http, known), "task_id": stranger})
        assert answer.status_code == 200
        assert await dep.ledger.get(stranger) is None
        assert dep.receiver.ignored == 1 and dep.events.notified == 0
        listed = _result(await dep.client.call_tool("list_tasks", {}))
        assert stranger not in json.dumps(listed)

        taken = await _hook(dep.hooks, await _task_data(http, known, status="processing"))
        assert (taken.status_code, taken.content) == (answer.status_code, answer.content)
        assert dep.receiver.taken == 1 and dep.events.notified == 1


@pytest.mark.parametrize(
    "hostile_id",
    ["../../../etc/passwd", "0f8fad5b-d9cb-469f-a165-70867728950e/../x", "<script>", "", 17, None],
)
async def test_a_webhook_naming_a_task_id_not_in_piapis_form_is_refused(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path, hostile_id: Any
) -> None:
    """The body goes through the same strict parser as PiAPI's answers: a bad id is a 400, nothing else."""
    simulator.controls.duration = 600
    async with deployment(simulator, clock, http, state_dir, webhooks=True) as dep:
        known = await _created(dep, simulator)
        answer = await _hook(dep.hooks, {**await _task_data(http, known), "task_id": hostile_id})
        assert answer.status_code == 400
        assert dep.events.notified == 0 and dep.receiver.taken == 0


async def test_malformed_and_oversized_webhooks_are_refused(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """Not JSON, no ``data``, nested past the recursion limit: 400; over the size limit: 413."""
    async with deployment(simulator, clock, http, state_dir, webhooks=True) as dep:
        for body in (
            b"not json",
            b"[]",
            b'{"timestamp": 1}',
            b'{"data": "x"}',
            b"[" * 100_000 + b"]" * 100_000,
        ):
            assert (await _hook(dep.hooks, body)).status_code in (400, 413), body[:20]
        assert (await _hook(dep.hooks, b'{"data": {}}')).status_code == 400
        huge = json.dumps({"data": {"task_id": "x", "pad": "x" * MAX_WEBHOOK_BYTES}}).encode()
        assert (await _hook(dep.hooks, huge)).status_code == 413

        async def trickle() -> AsyncIterator[bytes]:
            for _ in range(MAX_WEBHOOK_BYTES // 1024 + 2):
                yield b" " * 1024

        streamed = await dep.hooks.post(WEBHOOK_PATH, headers={"x-webhook-secret": SECRET}, content=trickle())
        assert streamed.status_code == 413
        assert dep.events.notified == 0


async def test_a_forged_webhook_with_a_hostile_output_url_never_reaches_a_result_or_the_ledger(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """A webhook only rings the bell: the waiter asks PiAPI itself, and the ledger keeps no URL from the body."""
    simulator.controls.duration = 20
    hostile = "http://169.254.169.254/latest/meta-data/iam"
    async with deployment(simulator, clock, http, state_dir, webhooks=True) as dep:
        task_id = await _created(dep, simulator)
        forged = await _task_data(http, task_id, status="completed", output={"image_url": hostile})
        assert (await _hook(dep.hooks, forged)).status_code == 200
        entry = await dep.ledger.get(task_id)
        assert entry is not None and hostile not in entry.model_dump_json()
        done = _result(await dep.client.call_tool("get_task", {"task_id": task_id, "wait_seconds": 60}))
        assert (done["status"], done["done"]) == ("completed", True)
        assert hostile not in json.dumps(done)
        assert [output["url"] for output in done["outputs"]] == [f"http://piapi.test/temp/{task_id}.png"]
        assert hostile not in dep.ledger_path.read_bytes().decode("latin-1")


async def test_the_webhook_secret_appears_in_no_log_result_ledger_row_or_error(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Creates carry it to PiAPI (which echoes it in every task answer), and it goes nowhere else."""
    caplog.set_level(logging.DEBUG)
    simulator.controls.duration = 5
    seen: list[str] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    async with deployment(simulator, clock, http, state_dir, webhooks=True) as dep:
        done = await dep.client.call_tool("kontext_edit", EDIT, progress_callback=progress)
        failed = await dep.client.call_tool("kontext_edit", {**EDIT, "prompt": "a storm [fail]"})
        task_id = _result(done)["task_id"]
        # PiAPI has it (the create sent it, every answer echoes it): the test can see a leak.
        assert simulator.tasks[task_id].config["webhook_config"] == {"endpoint": ENDPOINT, "secret": SECRET}
        assert SECRET in json.dumps(await _task_data(http, task_id))
        refused = await _hook(dep.hooks, await _task_data(http, task_id), secret="wrong-secret-0123456789")
        looked_up = await dep.client.call_tool("get_task", {"task_id": task_id})
        listed = await dep.client.call_tool("list_tasks", {})
        assert dep.receiver.taken == 2
        texts = [
            *(result.model_dump_json() for result in (done, failed, looked_up, listed)),
            *seen,
            caplog.text,
            refused.text,
            repr(dep.receiver),
            repr(WebhookTarget(ENDPOINT, SECRET)),
        ]
        stored = b"".join(
            path.read_bytes() for path in state_dir.iterdir() if path.name.startswith("tasks.sqlite3")
        )
    assert "failed" in failed.model_dump_json()
    for text in texts:
        assert SECRET not in text
    assert SECRET.encode() not in stored


async def test_an_upstream_error_message_quoting_the_webhook_secret_reaches_the_caller_scrubbed(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """A proxy that puts the secret into a failed task's message: the result quotes it as ``***``."""
    simulator.controls.duration = 1

    def leak(data: dict[str, Any]) -> dict[str, Any]:
        if data.get("status") == "failed":
            return {**data, "error": {"code": 10000, "message": f"webhook {SECRET} refused"}}
        return data

    simulator.controls.tamper = leak
    async with deployment(simulator, clock, http, state_dir, webhooks=True) as dep:
        failed = await dep.client.call_tool("kontext_edit", {**EDIT, "prompt": "a storm [fail]"})

    text = failed.model_dump_json()
    assert "webhook *** refused" in text and SECRET not in text


async def _serving(config: Config, port: int) -> None:
    await serve(config, "streamable-http", "127.0.0.1", port)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize("public_url", [None, "https://mcp.example.com/"])
async def test_the_create_asks_for_webhooks_only_when_hosted_over_http_with_a_public_url(
    simulator: PiAPISimulator, state_dir: Path, public_url: str | None
) -> None:
    """``piapi-mcp --transport streamable-http`` sends ``webhook_config`` exactly when PIAPI_PUBLIC_URL is set."""
    async with serve_app_on_loopback(simulator.app) as sim_url:
        env = {"PIAPI_API_KEY": API_KEY, "PIAPI_BASE_URL": sim_url, "PIAPI_STATE_DIR": str(state_dir)}
        env["PIAPI_OUTPUT_DIR"] = os.environ["PIAPI_OUTPUT_DIR"]
        if public_url:
            env["PIAPI_PUBLIC_URL"] = public_url
        port = _free_port()
        config = Config.load(build_parser().parse_args(["--transport", "streamable-http"]), env)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(_serving, config, port)
                async with httpx2.AsyncClient(trust_env=False) as mcp_http:
                    while True:
                        try:
                            await mcp_http.get(f"http://127.0.0.1:{port}/mcp")
                            break
                        except httpx2.HTTPError:
                            await anyio.sleep(0.02)
                    async with Client(
                        streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=mcp_http)
                    ) as c:
                        started = _result(await c.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0}))
                group.cancel_scope.cancel()
    config_sent = simulator.tasks[started["task_id"]].config
    if public_url is None:
        assert config_sent == {}
    else:
        generated = (state_dir / "webhook-secret").read_text().strip()
        assert config_sent == {
            "webhook_config": {"endpoint": "https://mcp.example.com/webhooks/piapi", "secret": generated}
        }
        assert len(generated) >= 32
        assert (state_dir / "webhook-secret").stat().st_mode & 0o077 == 0


async def test_a_stdio_server_never_asks_for_webhooks_even_with_a_public_url(
    simulator: PiAPISimulator, state_dir: Path
) -> None:
    """PiAPI cannot reach a stdio server: with PIAPI_PUBLIC_URL set its creates carry no ``config``."""
    script = Path(sys.executable).with_name("piapi-mcp")
    command, args = (str(script), []) if script.exists() else (sys.executable, ["-m", "piapi_mcp"])
    async with serve_app_on_loopback(simulator.app) as sim_url:
        env = {
            "PIAPI_API_KEY": API_KEY,
            "PIAPI_BASE_URL": sim_url,
            "PIAPI_PUBLIC_URL": "https://mcp.example.com",
            "PIAPI_WEBHOOK_SECRET": SECRET,
            "PATH": os.environ.get("PATH", ""),
            "PIAPI_STATE_DIR": str(state_dir),
            "PIAPI_OUTPUT_DIR": os.environ["PIAPI_OUTPUT_DIR"],
        }
        parameters = StdioServerParameters(command=command, args=[*args, "--log-level", "WARNING"], env=env)
        with anyio.fail_after(30):
            async with Client(parameters) as client:
                started = _result(await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0}))
    assert simulator.tasks[started["task_id"]].config == {}


async def test_the_webhook_route_needs_its_secret_not_the_bearer_token_and_mcp_still_needs_the_token(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """PiAPI has no bearer token: its webhooks pass on the secret alone, and /mcp stays behind the token."""
    token = "t0k3n-" + "x" * 40
    ledger = TaskLedger.open(state_dir / "tasks.sqlite3", clock=clock)
    events = LocalTaskEvents()
    target = WebhookTarget(ENDPOINT, SECRET)
    server = make_server(simulator, clock, http, ledger=ledger, events=events, webhook=target)
    receiver = WebhookReceiver(SECRET, ledger, events)
    app = build_http_app(server, "streamable-http", token=token, webhooks=receiver)
    simulator.controls.duration = 600
    try:
        async with (
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=PUBLIC) as hooks,
            Client(server, raise_exceptions=True) as client,
        ):
            started = _result(await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0}))
            data = await _task_data(http, started["task_id"], status="processing")
            assert (await _hook(hooks, data)).status_code == 200
            assert (await _hook(hooks, data, secret=None)).status_code == 401
            with_token_only = await hooks.post(
                WEBHOOK_PATH,
                headers={"authorization": f"Bearer {token}"},
                content=json.dumps({"data": data}).encode(),
            )
            assert with_token_only.status_code == 401
            assert (await hooks.post("/mcp", json={})).status_code == 401
            assert (
                await hooks.post("/mcp", headers={"x-webhook-secret": SECRET}, json={})
            ).status_code == 401
    finally:
        ledger.close()
    assert receiver.taken == 1 and events.notified == 1


async def test_repeated_webhooks_without_a_new_status_wake_no_one(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """PiAPI posts on log and output updates too: only a new status (or an end) triggers a poll."""
    simulator.controls.duration = 600
    async with deployment(simulator, clock, http, state_dir, webhooks=True) as dep:
        task_id = await _created(dep, simulator)
        processing = await _task_data(http, task_id, status="processing")
        for _ in range(3):
            assert (await _hook(dep.hooks, processing)).status_code == 200
        assert dep.receiver.taken == 3 and dep.events.notified == 1
        assert (await _hook(dep.hooks, {**processing, "status": "failed"})).status_code == 200
        assert dep.events.notified == 2
