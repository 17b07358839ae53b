"""A PiAPI simulator: a Starlette app that follows PiAPI's documented task contract offline.

Routes (as PiAPI): ``POST /api/v1/task``, ``GET /api/v1/task/{id}``, ``DELETE /api/v1/task/{id}``,
the task history ``GET /api/open/tasks/histories``, the account ``GET /account/info``, the generated
outputs under ``GET /temp/{name}``,
and PiAPI's file upload ``POST /api/ephemeral_resource`` (its files then served under
``/_uploads/``). Every create is judged through the catalog (:mod:`piapi_mcp.simulator.contract`):
an unknown pair or an input its spec refuses gets PiAPI's 400. Tasks go ``pending`` →
``processing`` → ``completed`` (or ``failed``) on an injectable clock, so tests move time instead
of waiting. A completed task answers with its spec's documented output shape, pointing at real
files of its kind: a PNG drawn with the prompt (on the input picture, for an edit), a small MP4,
a WAV, a GLB, or a caption.

Knobs live on :class:`SimulatorControls`: in-process, change the object; over HTTP, ``POST`` JSON
to ``/_simulator/controls``. A prompt containing ``[fail]`` makes that one task fail, so anyone
trying the sandbox can see a failure too. ``GET /_simulator/tasks`` lists the tasks created so far
and the faults served, for benchmarks that count lost and duplicated tasks.

Webhooks: inside :meth:`PiAPISimulator.sending_webhooks`, a task created with
``config.webhook_config`` is announced as PiAPI does when it ends (completed or failed): a POST of
``{"timestamp", "data"}`` with the secret in ``x-webhook-secret``, on the simulator's clock and
through an injected poster (tests stay in process). ``drop_webhooks`` loses them, ``webhook_delay``
delays them.

Faults come in three kinds:

- scripted :class:`Fault` answers (an HTTP status, a garbled body, a dropped connection), served
  first-come first-served to the route they name;
- random ones: with ``fault_rate`` > 0, that share of requests get a fault drawn (by a seeded
  :class:`random.Random`) from ``fault_kinds``. A fault that means "PiAPI refused" (429, 500, 503)
  creates nothing; one that loses PiAPI's answer (a gateway's 502 page, a non-JSON 200, a reset)
  hits a create *after* the task was made, as on a real network, and the task is marked
  ``answer_lost``;
- connection-level ones, in process: :class:`FaultyTransport` wraps the ``httpx2`` transport to the
  simulator and refuses connections, loses answers, or times out, which an ASGI app cannot do.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.to_thread
import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from piapi_mcp.catalog import TaskSpec
from piapi_mcp.models import USD_PER_CREDIT_UNIT
from piapi_mcp.simulator.contract import ServedOutput, contract_of, shape_output, validate_create
from piapi_mcp.simulator.faults import (
    RANDOM_FAULT_KINDS,
    REFUSING_KINDS,
    Fault,
    RandomFaultKind,
    Route_,
    error_response,
    fault_response,
    random_fault_response,
)
from piapi_mcp.simulator.render import (
    CONTENT_TYPES,
    photo,
    render_image,
    tiny_audio,
    tiny_glb,
    tiny_video,
)
from piapi_mcp.timing import Clock, SystemClock

FAIL_MARKER = "[fail]"
#: PiAPI's upload contract: these extensions, at most 10 MB of decoded data.
UPLOAD_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "mp4", "wav", "mp3"})
UPLOAD_LIMIT_BYTES = 10 * 1024 * 1024
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class HostedFile:
    """A file the simulator serves under ``/files/{name}``, answered as given."""

    body: bytes = b""
    content_type: str = "application/octet-stream"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: Trickle: send the body in chunks of this many bytes (0 sends it at once)...
    chunk_bytes: int = 0
    #: ...waiting this many seconds on the simulator's clock before each chunk after the first.
    chunk_seconds: float = 0.0


@dataclass
class SimulatorControls:
    """What the simulator does; change these between requests."""

    #: Keys accepted in ``X-API-Key``; ``None`` accepts any non-empty key.
    api_keys: frozenset[str] | None = None
    #: Seconds a task stays ``pending`` before it starts.
    queue_seconds: float = 1.0
    #: Seconds a task spends ``processing``, for its entry's reference inputs: a task of other inputs
    #: runs this times its spec's duration factor (more steps, pixels or video seconds run longer).
    duration: float = 10.0
    #: When set, a task of a catalog entry runs for that entry's typical duration times this (at least
    #: 0.1 s) instead of ``duration``: the sandbox keeps each family's proportions, scaled down.
    duration_scale: float | None = None
    #: Make every new task fail (as PiAPI reports a failed generation).
    fail_tasks: bool = False
    #: ``code`` in success envelopes: PiAPI sends 200; its schema example says 0.
    envelope_code: int = 200
    #: How statuses are spelled: PiAPI sends lowercase; its schema enum is capitalised.
    status_style: Literal["lower", "upper", "title"] = "lower"
    #: Where a completed task's output URL goes.
    output_key: Literal["image_url", "image_urls", "temporary_image_urls"] = "image_url"
    #: Whether the account's plan allows file uploads (PiAPI answers 403 otherwise).
    uploads_allowed: bool = True
    #: Whether output images can be downloaded (off: ``/temp/...`` answers 404, as after PiAPI pruned them).
    serve_outputs: bool = True
    #: Scripted faults, served first-come first-served.
    faults: list[Fault] = field(default_factory=list)
    #: While set, task answers to ``get`` report this raw status (e.g. ``"queued_for_gpu"``)...
    status_override: str | None = None
    #: ...for this many more answers (``None``: until ``status_override`` is cleared).
    status_override_gets: int | None = None
    #: Share of API requests (0 to 1) answered with a random fault from ``fault_kinds``.
    fault_rate: float = 0.0
    #: Seed of the random faults; setting it (also over HTTP) restarts their sequence.
    fault_seed: int | None = None
    #: What random faults may be.
    fault_kinds: list[RandomFaultKind] = field(default_factory=lambda: list(RANDOM_FAULT_KINDS))
    #: In process only: rewrites every task ``data`` the simulator answers with (create and get), to
    #: play a hostile or broken upstream (a proxy or mirror behind ``PIAPI_BASE_URL``); bytes it
    #: returns are sent as the whole answer body instead.
    tamper: Callable[[dict[str, Any]], dict[str, Any] | bytes] | None = None
    #: Extra files served under ``GET /files/{name}``: hostile outputs, redirects, odd bodies.
    files: dict[str, HostedFile] = field(default_factory=dict)
    #: How a cancelled task reports itself: ``cancelled``, or ``failed`` with a "canceled" message
    #: (PiAPI documents neither; its clients have seen both).
    cancel_style: Literal["cancelled", "failed"] = "cancelled"
    #: Whether ``GET /api/open/tasks/histories`` answers (off: 404, as where the endpoint is missing).
    history_enabled: bool = True
    #: In process only: awaited by each create after its task is made and before its answer is sent,
    #: to hold a create in flight (e.g. while a test kills the server that sent it).
    create_gate: Callable[[SimulatedTask], Awaitable[None]] | None = None
    #: The account ``GET /account/info`` describes: its balance before any task of this simulator
    #: (each completed task's ``consume`` is taken off it) and its plan...
    account_balance_usd: float = 25.0
    account_plan: str = "creator"
    #: ...or, when set, the ``data`` it answers with verbatim (odd or hostile account answers).
    account_data: Any = None
    #: Image tasks' outputs are the shipped 1024x1024 photograph (a JPEG, ``data/photo.jpg``) instead
    #: of a drawn gradient: results and previews measured on what a real output compresses like.
    photo_outputs: bool = False
    #: Webhooks are lost on the way (counted in ``webhooks`` with no answer): only polling finds the end.
    drop_webhooks: bool = False
    #: Seconds on the clock between a task's end and its webhook (PiAPI's delivery time).
    webhook_delay: float = 0.0


#: Sends one webhook: (endpoint, headers, body) -> the HTTP status the endpoint answered.
WebhookPoster = Callable[[str, dict[str, str], bytes], Awaitable[int]]


@dataclass(frozen=True)
class WebhookDelivery:
    """One webhook the simulator sent (or dropped): what it said and what the endpoint answered."""

    task_id: str
    status: str
    #: When it was due, on the simulator's clock (the task's end plus ``webhook_delay``).
    at: float
    #: The endpoint's HTTP status; ``None`` when dropped or the request failed.
    answer: int | None


def httpx_poster(client: httpx2.AsyncClient) -> WebhookPoster:
    """A :data:`WebhookPoster` over ``client`` (for example an ``ASGITransport`` into the hosted app)."""

    async def post(endpoint: str, headers: dict[str, str], body: bytes) -> int:
        response = await client.post(endpoint, headers=headers, content=body)
        return response.status_code

    return post


@dataclass
class SimulatedTask:
    """A task as the simulator keeps it."""

    task_id: str
    model: str
    task_type: str
    input: dict[str, Any]
    config: dict[str, Any]
    created: float
    created_wall: datetime
    queue_seconds: float
    duration: float
    fails: bool
    cancelled_at: float | None = None
    #: PiAPI created it but the answer carrying its id was lost on the way (a random fault).
    answer_lost: bool = False
    #: The catalog entry of its pair: what it validates against, and the kind and shape of its output.
    spec: TaskSpec | None = None
    #: The simulator's base URL as the create reached it (its outputs' URLs in a webhook start there).
    base_url: str = ""


class PiAPISimulator:
    """The simulator's state and its Starlette app (``.app``)."""

    def __init__(self, clock: Clock | None = None, controls: SimulatorControls | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.controls = controls or SimulatorControls()
        self.tasks: dict[str, SimulatedTask] = {}
        #: Every request seen, as ``(method, path)``, for tests and benchmarks to count.
        self.requests: list[tuple[str, str]] = []
        #: Uploaded files by the URL the upload answered with.
        self.uploads: dict[str, bytes] = {}
        #: Random faults served so far, by kind.
        self.random_faults: Counter[str] = Counter()
        self.random = random.Random(self.controls.fault_seed)
        #: Output files made so far, by name under ``/temp/`` (PNGs are drawn on first download).
        self._images: dict[str, bytes] = {}
        #: What each name under ``/temp/`` stands for, known once a completed task's output was shaped.
        self._served: dict[str, ServedOutput] = {}
        self._render_limiter = anyio.CapacityLimiter(2)
        #: Webhooks sent or dropped so far, in order.
        self.webhooks: list[WebhookDelivery] = []
        self._webhook_group: anyio.abc.TaskGroup | None = None
        self._webhook_poster: WebhookPoster | None = None
        self.app = Starlette(
            routes=[
                Route("/api/v1/task", self._create, methods=["POST"]),
                Route("/api/v1/task/{task_id}", self._get, methods=["GET"]),
                Route("/api/v1/task/{task_id}", self._cancel, methods=["DELETE"]),
                Route("/temp/{name}", self._output, methods=["GET"]),
                Route("/api/open/tasks/histories", self._history, methods=["GET"]),
                Route("/api/ephemeral_resource", self._upload, methods=["POST"]),
                Route("/account/info", self._account, methods=["GET"]),
                Route("/_uploads/{upload_id}/{name}", self._uploaded, methods=["GET"]),
                Route("/files/{name:path}", self._hosted_file, methods=["GET"]),
                Route("/_simulator/controls", self._set_controls, methods=["POST"]),
                Route("/_simulator/tasks", self._list_tasks, methods=["GET"]),
            ]
        )

    @asynccontextmanager
    async def sending_webhooks(self, post: WebhookPoster) -> AsyncIterator[None]:
        """Within the block, tasks created with ``config.webhook_config`` get their webhook at their end."""
        async with anyio.create_task_group() as group:
            self._webhook_group, self._webhook_poster = group, post
            try:
                yield
            finally:
                self._webhook_group = self._webhook_poster = None
                group.cancel_scope.cancel()

    async def _deliver_webhook(self, task: SimulatedTask, endpoint: str, secret: str) -> None:
        """Wait on the clock for the task's end, then post its ``{timestamp, data}`` as PiAPI does."""
        due = task.created + task.queue_seconds + task.duration + max(0.0, self.controls.webhook_delay)
        await self.clock.wait_until(due)
        poster = self._webhook_poster
        status = self.status_of(task)
        if task.cancelled_at is not None or poster is None:
            return
        if self.controls.drop_webhooks:
            self.webhooks.append(WebhookDelivery(task.task_id, status, due, None))
            return
        data = self._task_data(task, task.base_url)
        tamper = self.controls.tamper
        changed = tamper(data) if tamper is not None else data
        timestamp = int(self.clock.now().timestamp())
        envelope = {"timestamp": timestamp, "data": changed}
        body = changed if isinstance(changed, bytes) else json.dumps(envelope).encode()
        headers = {"content-type": "application/json"}
        if secret:  # PiAPI sends the header only when the create gave a secret
            headers["x-webhook-secret"] = secret
        # On a manual clock the delivery happens at the moment it is due, however long it takes for real.
        hold = getattr(self.clock, "hold", None)
        answer: int | None = None
        with hold() if hold is not None else nullcontext():
            try:
                answer = await poster(endpoint, headers, body)
            except httpx2.HTTPError:
                answer = None
        self.webhooks.append(WebhookDelivery(task.task_id, status, due, answer))

    @property
    def created_count(self) -> int:
        """How many tasks have been created."""
        return len(self.tasks)

    # --- state ---------------------------------------------------------------------------

    def status_of(self, task: SimulatedTask) -> str:
        """The task's lowercase status now."""
        now = self.clock.monotonic()
        if task.cancelled_at is not None:
            return "cancelled"
        if now < task.created + task.queue_seconds:
            return "pending"
        if now < task.created + task.queue_seconds + task.duration:
            return "processing"
        return "failed" if task.fails else "completed"

    def _task_data(
        self, task: SimulatedTask, base_url: str, shown_status: str | None = None
    ) -> dict[str, Any]:
        status = self.status_of(task)
        if status == "cancelled" and self.controls.cancel_style == "failed":
            status = "failed"
        started = task.created_wall + timedelta(seconds=task.queue_seconds)
        ended = started + timedelta(seconds=task.duration)
        output: dict[str, Any] | None = None
        error: dict[str, Any] = {"code": 0, "raw_message": "", "message": "", "detail": None}
        if status == "completed":
            output = self._output_of(task, base_url)
        elif status == "processing" and task.spec is not None and task.spec.progress_field is not None:
            # Families that report progress (Midjourney, Hailuo) say how far the run is, in whole percent.
            ran = self.clock.monotonic() - task.created - task.queue_seconds
            output = {task.spec.progress_field: min(99, int(100 * ran / task.duration))}
        elif status == "failed" and task.cancelled_at is not None:
            canceled = "task canceled"
            error = {"code": 10000, "raw_message": canceled, "message": canceled, "detail": None}
        elif status == "failed":
            error = {
                "code": 10000,
                "raw_message": "simulated generation failure",
                "message": f"The {_kind_words(task)} generation failed (simulated).",
                "detail": None,
            }
        return {
            "task_id": task.task_id,
            "model": task.model,
            "task_type": task.task_type,
            "status": shown_status
            if shown_status is not None
            else _spell(status, self.controls.status_style),
            "config": {"service_mode": "", "webhook_config": task.config.get("webhook_config", {})},
            "input": dict(sorted(task.input.items())),
            "output": output,
            "meta": {
                "created_at": _rfc3339(task.created_wall),
                "started_at": _rfc3339(started) if status not in ("pending", "cancelled") else _GO_ZERO_TIME,
                "ended_at": _rfc3339(ended) if status in ("completed", "failed") else _GO_ZERO_TIME,
                "usage": self._usage(task),
                "is_using_private_pool": False,
            },
            "detail": None,
            "logs": [],
            "error": error,
        }

    def _output_of(self, task: SimulatedTask, base_url: str) -> dict[str, Any]:
        """The completed task's ``output``, in its spec's documented shape, pointing at files served here."""
        if task.spec is None:
            return {}
        output, served = shape_output(task.spec, task.task_id, base_url, _caption(task))
        self._served.update(served)
        key = self.controls.output_key
        if key != "image_url" and isinstance(output.get("image_url"), str) and output["image_url"]:
            output[key], output["image_url"] = [output["image_url"]], ""
        return output

    def _usage(self, task: SimulatedTask) -> dict[str, Any]:
        contract = contract_of(task.spec) if task.spec is not None else None
        kind, consume = (contract.usage_type, contract.consume) if contract else ("llm", 0)
        return {"type": kind, "frozen": 0, "consume": consume}

    # --- HTTP ----------------------------------------------------------------------------

    def _envelope(self, data: Any, message: str = "success") -> JSONResponse:
        return JSONResponse({"code": self.controls.envelope_code, "data": data, "message": message})

    def _duration_of(self, spec: TaskSpec, task_input: dict[str, Any]) -> float:
        """How long a new task runs: ``duration`` (or its typical one, scaled) times its inputs' factor."""
        scale = self.controls.duration_scale
        base = self.controls.duration if scale is None else max(0.1, spec.typical_seconds * scale)
        return base * spec.duration_factor(task_input)

    def _task_envelope(self, data: dict[str, Any]) -> Response:
        tamper = self.controls.tamper
        changed = tamper(data) if tamper is not None else data
        if isinstance(changed, bytes):
            return Response(changed, media_type="application/json")
        return self._envelope(changed)

    def _check(self, request: Request, route: Route_) -> Response | None:
        self.requests.append((request.method, request.url.path))
        for fault in self.controls.faults:
            if fault.times > 0 and fault.route in (route, "any"):
                fault.times -= 1
                if fault.times == 0:
                    self.controls.faults.remove(fault)
                return fault_response(fault)
        key = request.headers.get("x-api-key", "")
        allowed = self.controls.api_keys
        if not key or (allowed is not None and key not in allowed):
            return error_response(401, "Unauthorized: invalid api key")
        return None

    def _random_fault(self) -> RandomFaultKind | None:
        """A fault kind for this request, drawn with probability ``fault_rate``; ``None`` for none."""
        rate, kinds = self.controls.fault_rate, self.controls.fault_kinds
        if rate <= 0 or not kinds or self.random.random() >= rate:
            return None
        kind: RandomFaultKind = self.random.choice(kinds)
        return kind

    def _serve_random_fault(self, kind: RandomFaultKind) -> Response:
        self.random_faults[kind] += 1
        return random_fault_response(kind)

    async def _create(self, request: Request) -> Response:
        if (refused := self._check(request, "create")) is not None:
            return refused
        fault = self._random_fault()
        if fault is not None and fault in REFUSING_KINDS:
            return self._serve_random_fault(fault)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response(400, "invalid request: body is not JSON")
        judged = validate_create(body)
        if isinstance(judged, str):
            return error_response(400, f"invalid request: {judged}")
        spec, task_input = judged
        task = SimulatedTask(
            task_id=str(uuid.uuid4()),
            model=body["model"],
            task_type=body["task_type"],
            input=task_input,
            config=body.get("config") or {},
            created=self.clock.monotonic(),
            created_wall=self.clock.now(),
            queue_seconds=self.controls.queue_seconds,
            duration=self._duration_of(spec, task_input),
            fails=self.controls.fail_tasks or _asks_to_fail(task_input),
            spec=spec,
            base_url=_base(request),
        )
        self.tasks[task.task_id] = task
        hook = task.config.get("webhook_config")
        if self._webhook_group is not None and isinstance(hook, dict) and hook.get("endpoint"):
            self._webhook_group.start_soon(
                self._deliver_webhook, task, str(hook["endpoint"]), str(hook.get("secret") or "")
            )
        if self.controls.create_gate is not None:
            await self.controls.create_gate(task)
        if fault is not None:  # PiAPI made the task, but its answer does not make it back
            task.answer_lost = True
            return self._serve_random_fault(fault)
        return self._task_envelope(self._task_data(task, _base(request)))

    async def _history(self, request: Request) -> Response:
        """PiAPI's task history: this account's tasks created in ``[start_time, end_time]`` (unix seconds).

        ``model`` filters loosely (PiAPI takes family names such as ``flux``): a task matches when the
        filter appears in its model name, ignoring case. Newest first, paged.
        """
        if (refused := self._check(request, "history")) is not None:
            return refused
        if not self.controls.history_enabled:
            return error_response(404, "not found")
        query = request.query_params
        try:
            page = int(query.get("page", "1"))
            page_size = int(query.get("page_size", "10"))
            start = float(query.get("start_time", "0"))
            end = float(query.get("end_time", "1e12"))
        except ValueError:
            return error_response(400, "Invalid request parameters")
        if page < 1 or not 1 <= page_size <= 100:
            return error_response(400, "page_size must be between 1 and 100")
        family = query.get("model", "").lower()
        found = sorted(
            (
                task
                for task in self.tasks.values()
                if start <= task.created_wall.timestamp() <= end and family in task.model.lower()
            ),
            key=lambda task: task.created_wall,
            reverse=True,
        )
        chosen = found[(page - 1) * page_size : page * page_size]
        tamper = self.controls.tamper
        listed = [
            tamper(data) if tamper is not None else data
            for data in (self._task_data(task, _base(request)) for task in chosen)
        ]
        return self._envelope({"page": page, "page_size": page_size, "total": len(found), "list": listed})

    async def _account(self, request: Request) -> Response:
        """PiAPI's account info (``piapi-api.md`` §8.1): name, plan, the balance left in US$.

        The balance is the configured one less what this simulator's completed tasks consumed.
        """
        if (refused := self._check(request, "account")) is not None:
            return refused
        if (fault := self._random_fault()) is not None:
            return self._serve_random_fault(fault)
        if self.controls.account_data is not None:
            return self._envelope(self.controls.account_data)
        consumed = sum(
            self._usage(task)["consume"]
            for task in self.tasks.values()
            if self.status_of(task) == "completed"
        )
        balance = self.controls.account_balance_usd - consumed * USD_PER_CREDIT_UNIT
        return self._envelope(
            {
                "id": 1,
                "name": "sandbox@piapi-mcp.local",
                "plan": self.controls.account_plan,
                "type": "payg",
                "is_enable": True,
                "max_concurrent_task_count": 10,
                "equivalent_in_usd": round(balance, 7),
            }
        )

    def _find(self, request: Request, route: Route_) -> SimulatedTask | Response:
        if (refused := self._check(request, route)) is not None:
            return refused
        if (fault := self._random_fault()) is not None:
            return self._serve_random_fault(fault)
        task = self.tasks.get(request.path_params["task_id"])
        return error_response(404, "task not found") if task is None else task

    async def _get(self, request: Request) -> Response:
        task = self._find(request, "get")
        if isinstance(task, Response):
            return task
        return self._task_envelope(self._task_data(task, _base(request), self._status_override()))

    def _status_override(self) -> str | None:
        controls = self.controls
        if controls.status_override is None:
            return None
        shown = controls.status_override
        if controls.status_override_gets is not None:
            controls.status_override_gets -= 1
            if controls.status_override_gets <= 0:
                controls.status_override, controls.status_override_gets = None, None
        return shown

    async def _cancel(self, request: Request) -> Response:
        task = self._find(request, "cancel")
        if isinstance(task, Response):
            return task
        if self.status_of(task) != "pending":
            return error_response(400, "task is not pending, can not be canceled")
        task.cancelled_at = self.clock.monotonic()
        return JSONResponse({"code": self.controls.envelope_code, "message": f"task {task.task_id} canceled"})

    async def _output(self, request: Request) -> Response:
        """A completed task's output file, with the content type of its kind."""
        name = request.path_params["name"]
        served = self._served.get(name)
        task = self.tasks.get(served.task_id) if served is not None else None
        if (
            served is None
            or task is None
            or self.status_of(task) != "completed"
            or not self.controls.serve_outputs
        ):
            return Response("not found", status_code=404, media_type="text/plain")
        extension = name.rsplit(".", 1)[-1]
        if name not in self._images:
            self._images[name] = await self._make_output(task, served)
        body = self._images[name]
        # The photograph is a JPEG whatever name the output has: say so, as a real host would.
        jpeg = body.startswith(b"\xff\xd8\xff")
        return Response(
            body,
            media_type="image/jpeg" if jpeg else CONTENT_TYPES.get(extension, "application/octet-stream"),
        )

    async def _make_output(self, task: SimulatedTask, served: ServedOutput) -> bytes:
        if served.kind == "video":
            return tiny_video()
        if served.kind == "audio":
            return tiny_audio(_caption(task))
        if served.kind in ("model3d", "file"):
            return tiny_glb()
        if served.kind == "text":
            return _caption(task).encode()
        image_spec = task.spec is not None and task.spec.output == "image"
        if image_spec and self.controls.photo_outputs:
            return photo()
        # An image task is drawn at its requested size; a cover or preview of another kind is small.
        params = task.input if image_spec else {"prompt": _words(task), "width": 256, "height": 256}
        return await anyio.to_thread.run_sync(
            render_image, params, self._input_bytes(_input_image(task)), limiter=self._render_limiter
        )

    def _input_bytes(self, url: str) -> bytes | None:
        """The input image, when it is one the simulator holds (an upload or an earlier output)."""
        if url in self.uploads:
            return self.uploads[url]
        return self._images.get(url.rsplit("/", 1)[-1]) if "/temp/" in url else None

    async def _upload(self, request: Request) -> Response:
        """PiAPI's ephemeral file upload: ``{file_name, file_data (base64)}`` in, ``data.url`` out."""
        if (refused := self._check(request, "upload")) is not None:
            return refused
        if not self.controls.uploads_allowed:
            return error_response(403, "Insufficient plan level")
        try:
            body = await request.json()
            name = str(body["file_name"]).strip()
            encoded = str(body["file_data"])
            if encoded.startswith("data:"):  # PiAPI accepts an optional data-URI prefix
                encoded = encoded.split(",", 1)[1]
            data = base64.b64decode(encoded, validate=True)
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError, ValueError):
            return error_response(400, "Invalid request parameters")
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if (
            not name
            or len(name) > 128
            or "/" in name
            or extension not in UPLOAD_EXTENSIONS
            or not data
            or len(data) > UPLOAD_LIMIT_BYTES
        ):
            return error_response(400, "Invalid request parameters")
        url = f"{_base(request)}/_uploads/{uuid.uuid4().hex}/{name}"
        self.uploads[url] = data
        return self._envelope({"url": url})

    async def _uploaded(self, request: Request) -> Response:
        data = self.uploads.get(str(request.url).split("?", 1)[0])
        if data is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(data, media_type="application/octet-stream")

    async def _hosted_file(self, request: Request) -> Response:
        hosted = self.controls.files.get(request.path_params["name"])
        if hosted is None:
            return Response("not found", status_code=404, media_type="text/plain")
        if hosted.chunk_bytes > 0:
            return StreamingResponse(
                self._trickle(hosted),
                status_code=hosted.status,
                media_type=hosted.content_type,
                headers=hosted.headers,
            )
        return Response(
            hosted.body, status_code=hosted.status, media_type=hosted.content_type, headers=hosted.headers
        )

    async def _trickle(self, hosted: HostedFile) -> AsyncIterator[bytes]:
        for start in range(0, len(hosted.body), hosted.chunk_bytes):
            if start:
                await self.clock.sleep(hosted.chunk_seconds)
            yield hosted.body[start : start + hosted.chunk_bytes]

    async def _set_controls(self, request: Request) -> Response:
        changes = await request.json()
        known = {f.name for f in fields(SimulatorControls)} - {
            "faults",
            "api_keys",
            "tamper",
            "files",
            "create_gate",
        }
        for name, value in changes.items():
            if name in known:
                setattr(self.controls, name, value)
            elif name == "faults":
                self.controls.faults = [Fault(**item) for item in value]
        if "fault_seed" in changes:
            self.random.seed(self.controls.fault_seed)
        return JSONResponse({"ok": True})

    async def _list_tasks(self, request: Request) -> Response:
        tasks = [
            {
                "task_id": task.task_id,
                "prompt": task.input.get("prompt"),
                "status": self.status_of(task),
                "answer_lost": task.answer_lost,
                # When it ends (or ended), in Unix seconds: benchmarks measure how late the end is noticed.
                "ends_at": task.created_wall.timestamp() + task.queue_seconds + task.duration,
            }
            for task in self.tasks.values()
        ]
        return JSONResponse(
            {
                "tasks": tasks,
                "requests": len(self.requests),
                "random_faults": dict(self.random_faults),
                "webhooks": [asdict(delivery) for delivery in self.webhooks],
            }
        )


def _asks_to_fail(task_input: dict[str, Any]) -> bool:
    """Whether a text of the input carries the ``[fail]`` marker (so the sandbox can show a failure)."""
    return any(isinstance(value, str) and FAIL_MARKER in value.lower() for value in task_input.values())


def _kind_words(task: SimulatedTask) -> str:
    """What the task makes, in words ("image", "3D model")."""
    kind = task.spec.output if task.spec is not None else "task"
    return "3D model" if kind == "model3d" else kind


def _words(task: SimulatedTask) -> str:
    """What the task is about, in its own words: its prompt or first text that is not a URL."""
    prompt = task.input.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return prompt
    texts = (v for v in task.input.values() if isinstance(v, str) and v and not _is_reference(v))
    return next(texts, task.task_type)


def _caption(task: SimulatedTask) -> str:
    """The text a text-output task answers with, and the seed of its other outputs."""
    image = _input_image(task)
    about = f" of {image}" if image else ""
    return f"PiAPI simulator {task.spec.noun if task.spec else 'text'}{about}: {_words(task)}"


def _input_image(task: SimulatedTask) -> str:
    """The task's first image input (a URL or data), or ``""``."""
    if task.spec is None:
        return ""
    for name, marker in task.spec.media_fields().items():
        value = task.input.get(name)
        value = value[0] if isinstance(value, list) and value else value
        if marker.kind == "image" and isinstance(value, str):
            return value
    return ""


def _is_reference(value: str) -> bool:
    return value.startswith(("http://", "https://", "data:", "piapi://", "file:", "/", "~"))


def _spell(status: str, style: str) -> str:
    if style == "upper":
        return status.upper()
    if style == "title":
        return status.title()
    return status


def _rfc3339(moment: datetime) -> str:
    # PiAPI sends nanoseconds; pad microseconds to the same width.
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")
