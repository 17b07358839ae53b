"""A PiAPI simulator: a Starlette app that follows PiAPI's documented task contract offline.

Routes (as PiAPI): ``POST /api/v1/task``, ``GET /api/v1/task/{id}``, ``DELETE /api/v1/task/{id}``,
the generated outputs under ``GET /temp/{id}.png``, and PiAPI's file upload
``POST /api/ephemeral_resource`` (its files then served under ``/_uploads/``). Tasks go
``pending`` → ``processing`` → ``completed`` (or ``failed``) on an injectable clock, so tests
move time instead of waiting. Output images are real PNGs, drawn with the prompt on them.

Knobs live on :class:`SimulatorControls`: in-process, change the object; over HTTP, ``POST`` JSON
to ``/_simulator/controls``. A prompt containing ``[fail]`` makes that one task fail, so anyone
trying the sandbox can see a failure too. ``GET /_simulator/tasks`` lists the tasks created so far
and the faults served, for benchmarks that count lost and duplicated tasks.

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
import hashlib
import io
import json
import random
import textwrap
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import anyio
import anyio.to_thread
import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from piapi_mcp.catalog import CATALOG
from piapi_mcp.timing import Clock, SystemClock

#: PiAPI's credit units for one Kontext edit (derived from PiAPI's examples: 200,000 = US$0.02).
KONTEXT_CONSUME = 200_000
FAIL_MARKER = "[fail]"
#: PiAPI's upload contract: these extensions, at most 10 MB of decoded data.
UPLOAD_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "mp4", "wav", "mp3"})
UPLOAD_LIMIT_BYTES = 10 * 1024 * 1024
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_MAX_RENDER_SIDE = 1024

Route_ = Literal["create", "get", "cancel", "upload", "history", "any"]
#: ``reset`` starts the answer, then drops the connection (over HTTP the client sees a broken
#: answer; in process, :class:`FaultyTransport` turns it into ``httpx2.RemoteProtocolError``).
FaultBody = Literal["envelope", "html", "truncated", "empty", "reset"]
#: Faults ``fault_rate`` draws from: HTTP statuses, a 200 that is not JSON, a dropped connection.
RandomFaultKind = Literal["429", "500", "502", "503", "non_json", "reset"]
RANDOM_FAULT_KINDS: Final[tuple[RandomFaultKind, ...]] = ("429", "500", "502", "503", "non_json", "reset")
#: Random faults that mean PiAPI refused the request: a create meeting one creates nothing.
_REFUSING_KINDS: Final = frozenset({"429", "500", "503"})


@dataclass
class Fault:
    """One scripted misbehaviour, served ``times`` times to requests on ``route``."""

    route: Route_ = "any"
    status: int = 500
    body: FaultBody = "envelope"
    retry_after: str | None = None
    times: int = 1


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
    #: Seconds a task spends ``processing``.
    duration: float = 10.0
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
        self._images: dict[str, bytes] = {}
        self._render_limiter = anyio.CapacityLimiter(2)
        self.app = Starlette(
            routes=[
                Route("/api/v1/task", self._create, methods=["POST"]),
                Route("/api/v1/task/{task_id}", self._get, methods=["GET"]),
                Route("/api/v1/task/{task_id}", self._cancel, methods=["DELETE"]),
                Route("/temp/{name}", self._image, methods=["GET"]),
                Route("/api/open/tasks/histories", self._history, methods=["GET"]),
                Route("/api/ephemeral_resource", self._upload, methods=["POST"]),
                Route("/_uploads/{upload_id}/{name}", self._uploaded, methods=["GET"]),
                Route("/files/{name:path}", self._hosted_file, methods=["GET"]),
                Route("/_simulator/controls", self._set_controls, methods=["POST"]),
                Route("/_simulator/tasks", self._list_tasks, methods=["GET"]),
            ]
        )

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
            url = f"{base_url}/temp/{task.task_id}.png"
            key = self.controls.output_key
            output = {"image_url": "", "image_base64": ""}
            if key == "image_url":
                output["image_url"] = url
            else:
                output[key] = [url]
        elif status == "failed" and task.cancelled_at is not None:
            canceled = "task canceled"
            error = {"code": 10000, "raw_message": canceled, "message": canceled, "detail": None}
        elif status == "failed":
            error = {
                "code": 10000,
                "raw_message": "simulated generation failure",
                "message": "The image generation failed (simulated).",
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
                "usage": {"type": "llm", "frozen": 0, "consume": KONTEXT_CONSUME},
                "is_using_private_pool": False,
            },
            "detail": None,
            "logs": [],
            "error": error,
        }

    # --- HTTP ----------------------------------------------------------------------------

    def _envelope(self, data: Any, message: str = "success") -> JSONResponse:
        return JSONResponse({"code": self.controls.envelope_code, "data": data, "message": message})

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
                return _fault_response(fault)
        key = request.headers.get("x-api-key", "")
        allowed = self.controls.api_keys
        if not key or (allowed is not None and key not in allowed):
            return _error(401, "Unauthorized: invalid api key")
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
        return _random_fault_response(kind)

    async def _create(self, request: Request) -> Response:
        if (refused := self._check(request, "create")) is not None:
            return refused
        fault = self._random_fault()
        if fault is not None and fault in _REFUSING_KINDS:
            return self._serve_random_fault(fault)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "invalid request: body is not JSON")
        problem = _validate_create(body)
        if problem:
            return _error(400, f"invalid request: {problem}")
        task_input = {"width": 1024, "height": 1024, "steps": 28, "seed": -1, **body["input"]}
        task = SimulatedTask(
            task_id=str(uuid.uuid4()),
            model=body["model"],
            task_type=body["task_type"],
            input=task_input,
            config=body.get("config") or {},
            created=self.clock.monotonic(),
            created_wall=self.clock.now(),
            queue_seconds=self.controls.queue_seconds,
            duration=self.controls.duration,
            fails=self.controls.fail_tasks or FAIL_MARKER in str(task_input.get("prompt", "")).lower(),
        )
        self.tasks[task.task_id] = task
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
            return _error(404, "not found")
        query = request.query_params
        try:
            page = int(query.get("page", "1"))
            page_size = int(query.get("page_size", "10"))
            start = float(query.get("start_time", "0"))
            end = float(query.get("end_time", "1e12"))
        except ValueError:
            return _error(400, "Invalid request parameters")
        if page < 1 or not 1 <= page_size <= 100:
            return _error(400, "page_size must be between 1 and 100")
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

    def _find(self, request: Request, route: Route_) -> SimulatedTask | Response:
        if (refused := self._check(request, route)) is not None:
            return refused
        if (fault := self._random_fault()) is not None:
            return self._serve_random_fault(fault)
        task = self.tasks.get(request.path_params["task_id"])
        return _error(404, "task not found") if task is None else task

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
            return _error(400, "task is not pending, can not be canceled")
        task.cancelled_at = self.clock.monotonic()
        return JSONResponse({"code": self.controls.envelope_code, "message": f"task {task.task_id} canceled"})

    async def _image(self, request: Request) -> Response:
        name = request.path_params["name"]
        task = self.tasks.get(name.removesuffix(".png"))
        if task is None or self.status_of(task) != "completed" or not self.controls.serve_outputs:
            return Response("not found", status_code=404, media_type="text/plain")
        if name not in self._images:
            self._images[name] = await anyio.to_thread.run_sync(
                render_image,
                task.input,
                self._input_bytes(str(task.input.get("image", ""))),
                limiter=self._render_limiter,
            )
        return Response(self._images[name], media_type="image/png")

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
            return _error(403, "Insufficient plan level")
        try:
            body = await request.json()
            name = str(body["file_name"]).strip()
            encoded = str(body["file_data"])
            if encoded.startswith("data:"):  # PiAPI accepts an optional data-URI prefix
                encoded = encoded.split(",", 1)[1]
            data = base64.b64decode(encoded, validate=True)
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError, ValueError):
            return _error(400, "Invalid request parameters")
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if (
            not name
            or len(name) > 128
            or "/" in name
            or extension not in UPLOAD_EXTENSIONS
            or not data
            or len(data) > UPLOAD_LIMIT_BYTES
        ):
            return _error(400, "Invalid request parameters")
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
            }
            for task in self.tasks.values()
        ]
        return JSONResponse(
            {"tasks": tasks, "requests": len(self.requests), "random_faults": dict(self.random_faults)}
        )


def _validate_create(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    model, task_type = body.get("model"), body.get("task_type")
    spec = CATALOG.find(model, task_type) if isinstance(model, str) and isinstance(task_type, str) else None
    if spec is None:
        return f"unsupported model/task_type {model!r}/{task_type!r}"
    task_input = body.get("input")
    if not isinstance(task_input, dict):
        return "input is required"
    # The string fields the spec requires (Kontext: prompt and image; text-to-image: prompt).
    required = [name for name, info in spec.input.model_fields.items() if info.is_required()]
    for name in required:
        if not isinstance(task_input.get(name), str) or not task_input[name].strip():
            return f"input.{name} is required"
    steps = task_input.get("steps", 28)
    if not isinstance(steps, int) or not 1 <= steps <= 40:
        return "input.steps must be between 1 and 40"
    for name in ("width", "height"):
        value = task_input.get(name, 1024)
        if not isinstance(value, int) or value <= 0:
            return f"input.{name} must be a positive integer"
    return None


def _fault_response(fault: Fault) -> Response:
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
    if fault.body == "reset":
        return _ResetResponse(fault.status)
    if fault.body == "html":
        return Response(
            "<html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>",
            status_code=fault.status,
            media_type="text/html",
            headers=headers,
        )
    if fault.body == "truncated":
        return Response(
            '{"code": 200, "data": {"task_id": "',
            status_code=fault.status,
            media_type="application/json",
            headers=headers,
        )
    if fault.body == "empty":
        return Response(b"", status_code=fault.status, headers=headers)
    messages = {429: "rate limit exceeded", 401: "Unauthorized: invalid api key"}
    return _error(fault.status, messages.get(fault.status, "internal error"), headers=headers)


def _random_fault_response(kind: RandomFaultKind) -> Response:
    if kind == "reset":
        return _ResetResponse(200)
    if kind == "non_json":
        return _fault_response(Fault(status=200, body="html"))
    if kind == "502":
        return _fault_response(Fault(status=502, body="html"))
    return _fault_response(Fault(status=int(kind)))


class SimulatedConnectionReset(Exception):
    """Raised by the simulator app to drop a connection in the middle of an answer."""


class _ResetResponse(Response):
    """Starts an answer, sends part of it, then drops the connection.

    Under uvicorn the client sees the connection close before the body is complete (and uvicorn
    logs the exception); under ``httpx2.ASGITransport`` the exception reaches the caller, which is
    what :class:`FaultyTransport` turns into ``httpx2.RemoteProtocolError``.
    """

    def __init__(self, status_code: int) -> None:
        super().__init__(status_code=status_code, media_type="application/json")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"code": 200, "da', "more_body": True})
        raise SimulatedConnectionReset("simulated connection reset in the middle of an answer")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"code": status, "data": None, "message": message}, status_code=status, headers=headers
    )


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


# --- connection-level faults, in process ---------------------------------------------------------

ConnectionFaultKind = Literal["refused", "reset", "timeout"]


@dataclass
class ConnectionFault:
    """One scripted connection failure, served ``times`` times to requests on ``route``.

    - ``refused``: the connection is never made (``httpx2.ConnectError``); PiAPI never sees the request.
    - ``reset``: the request reaches PiAPI and is handled, then the connection drops before the
      answer arrives (``httpx2.RemoteProtocolError``).
    - ``timeout``: the request reaches PiAPI and is handled, but the answer comes later than the
      request's read time-out (``httpx2.ReadTimeout``); with a clock, that time-out passes on it.
    """

    route: Route_ = "any"
    kind: ConnectionFaultKind = "reset"
    times: int = 1


def route_of(method: str, path: str) -> Route_ | None:
    """Which PiAPI call a request is (``None`` for anything but the task API)."""
    if path.rstrip("/") == "/api/v1/task":
        return "create" if method == "POST" else None
    if path.rstrip("/") == "/api/open/tasks/histories":
        return "history" if method == "GET" else None
    if path.rstrip("/") == "/api/ephemeral_resource":
        return "upload" if method == "POST" else None
    if path.startswith("/api/v1/task/") and method == "GET":
        return "get"
    if path.startswith("/api/v1/task/") and method == "DELETE":
        return "cancel"
    return None


class FaultyTransport(httpx2.AsyncBaseTransport):
    """An ``httpx2`` transport that fails connections on cue, around another transport.

    Wrap the transport to the simulator (``httpx2.ASGITransport(simulator.app)``) to give
    in-process tests what an ASGI app cannot: refused connections, answers lost after PiAPI acted
    on the request, and answers slower than the time-out. It also turns the simulator's own
    mid-answer resets (``Fault(body="reset")``, random ``reset`` faults) into the
    ``httpx2.RemoteProtocolError`` a real connection would raise.
    """

    def __init__(
        self,
        inner: httpx2.AsyncBaseTransport,
        faults: list[ConnectionFault] | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.inner = inner
        #: Scripted faults, served first-come first-served; add to it between requests.
        self.faults: list[ConnectionFault] = list(faults or [])
        #: Faults served so far, as ``(route, kind)``.
        self.served: list[tuple[Route_, ConnectionFaultKind]] = []
        self._clock = clock

    def _take(self, route: Route_ | None) -> ConnectionFault | None:
        if route is None:
            return None
        for fault in self.faults:
            if fault.times > 0 and fault.route in (route, "any"):
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
                self.served.append((route, fault.kind))
                return fault
        return None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` through the inner transport, unless a fault is due for its route."""
        fault = self._take(route_of(request.method, request.url.path))
        if fault is not None and fault.kind == "refused":
            raise httpx2.ConnectError("[Errno 111] Connection refused (simulated)", request=request)
        try:
            response = await self.inner.handle_async_request(request)
            if fault is not None:
                await response.aread()  # PiAPI has acted on the request; only its answer is lost
                await response.aclose()
        except SimulatedConnectionReset as err:
            raise httpx2.RemoteProtocolError(
                "peer closed connection without sending complete message body (simulated)", request=request
            ) from err
        if fault is None:
            return response
        if fault.kind == "reset":
            raise httpx2.RemoteProtocolError(
                "Server disconnected without sending a response (simulated)", request=request
            )
        timeouts = request.extensions.get("timeout")
        read_timeout = timeouts.get("read") if isinstance(timeouts, dict) else None
        if self._clock is not None and isinstance(read_timeout, int | float):
            await self._clock.sleep(read_timeout)
        raise httpx2.ReadTimeout("The read operation timed out (simulated)", request=request)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()


def render_image(task_input: dict[str, Any], source: bytes | None = None) -> bytes:
    """A PNG of the requested size (at most 1024 px a side) with the prompt drawn on it.

    The picture is the input image when the simulator has its bytes (``source``), tinted by the
    prompt so an edit visibly happened; otherwise a gradient.
    """
    from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

    width = max(16, min(int(task_input.get("width", 1024)), _MAX_RENDER_SIDE))
    height = max(16, min(int(task_input.get("height", 1024)), _MAX_RENDER_SIDE))
    prompt = str(task_input.get("prompt", ""))
    digest = hashlib.sha256(prompt.encode()).digest()
    top, bottom = digest[:3], digest[3:6]
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(
        Image.new("RGB", (width, height), tuple(bottom)),
        Image.new("RGB", (width, height), tuple(top)),
        gradient,
    )
    if source is not None:
        try:
            with Image.open(io.BytesIO(source)) as opened:
                picture = opened.convert("RGB").resize((width, height))
            image = Image.blend(picture, image, 0.35)
        except (UnidentifiedImageError, OSError, ValueError):
            pass
    draw = ImageDraw.Draw(image)
    size = max(12, width // 24)
    font = ImageFont.load_default(size=size)
    text = "\n".join(textwrap.wrap(f"PiAPI simulator: {prompt}", width=max(10, width // (size // 2 + 1))))
    draw.multiline_text(
        (size, size), text, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0)
    )
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()
