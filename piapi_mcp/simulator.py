"""A PiAPI simulator: a Starlette app that follows PiAPI's documented task contract offline.

Routes (as PiAPI): ``POST /api/v1/task``, ``GET /api/v1/task/{id}``, ``DELETE /api/v1/task/{id}``,
and the generated outputs under ``GET /temp/{id}.png``. Tasks go ``pending`` → ``processing`` →
``completed`` (or ``failed``) on an injectable clock, so tests move time instead of waiting.
Output images are real PNGs, drawn with the prompt on them.

Knobs live on :class:`SimulatorControls`: in-process, change the object; over HTTP, ``POST`` JSON
to ``/_simulator/controls``. A prompt containing ``[fail]`` makes that one task fail, so anyone
trying the sandbox can see a failure too.
"""

from __future__ import annotations

import hashlib
import io
import json
import textwrap
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from piapi_mcp.models import KONTEXT_MODEL, KONTEXT_TASK_TYPE
from piapi_mcp.timing import Clock, SystemClock

#: PiAPI's credit units for one Kontext edit (derived from PiAPI's examples: 200,000 = US$0.02).
KONTEXT_CONSUME = 200_000
FAIL_MARKER = "[fail]"
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_MAX_RENDER_SIDE = 1024

Route_ = Literal["create", "get", "cancel", "any"]
FaultBody = Literal["envelope", "html", "truncated", "empty"]


@dataclass
class Fault:
    """One scripted misbehaviour, served ``times`` times to requests on ``route``."""

    route: Route_ = "any"
    status: int = 500
    body: FaultBody = "envelope"
    retry_after: str | None = None
    times: int = 1


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
    #: Scripted faults, served first-come first-served.
    faults: list[Fault] = field(default_factory=list)


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


class PiAPISimulator:
    """The simulator's state and its Starlette app (``.app``)."""

    def __init__(self, clock: Clock | None = None, controls: SimulatorControls | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.controls = controls or SimulatorControls()
        self.tasks: dict[str, SimulatedTask] = {}
        #: Every request seen, as ``(method, path)``, for tests and benchmarks to count.
        self.requests: list[tuple[str, str]] = []
        self._images: dict[str, bytes] = {}
        self.app = Starlette(
            routes=[
                Route("/api/v1/task", self._create, methods=["POST"]),
                Route("/api/v1/task/{task_id}", self._get, methods=["GET"]),
                Route("/api/v1/task/{task_id}", self._cancel, methods=["DELETE"]),
                Route("/temp/{name}", self._image, methods=["GET"]),
                Route("/_simulator/controls", self._set_controls, methods=["POST"]),
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

    def _task_data(self, task: SimulatedTask, base_url: str) -> dict[str, Any]:
        status = self.status_of(task)
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
            "status": _spell(status, self.controls.status_style),
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

    async def _create(self, request: Request) -> Response:
        if (refused := self._check(request, "create")) is not None:
            return refused
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
        return self._envelope(self._task_data(task, _base(request)))

    def _find(self, request: Request, route: Route_) -> SimulatedTask | Response:
        if (refused := self._check(request, route)) is not None:
            return refused
        task = self.tasks.get(request.path_params["task_id"])
        return _error(404, "task not found") if task is None else task

    async def _get(self, request: Request) -> Response:
        task = self._find(request, "get")
        if isinstance(task, Response):
            return task
        return self._envelope(self._task_data(task, _base(request)))

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
        if task is None or self.status_of(task) != "completed":
            return Response("not found", status_code=404, media_type="text/plain")
        if name not in self._images:
            self._images[name] = render_image(task.input)
        return Response(self._images[name], media_type="image/png")

    async def _set_controls(self, request: Request) -> Response:
        changes = await request.json()
        known = {f.name for f in fields(SimulatorControls)} - {"faults", "api_keys"}
        for name, value in changes.items():
            if name in known:
                setattr(self.controls, name, value)
            elif name == "faults":
                self.controls.faults = [Fault(**item) for item in value]
        return JSONResponse({"ok": True})


def _validate_create(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if (body.get("model"), body.get("task_type")) != (KONTEXT_MODEL, KONTEXT_TASK_TYPE):
        return f"unsupported model/task_type {body.get('model')!r}/{body.get('task_type')!r}"
    task_input = body.get("input")
    if not isinstance(task_input, dict):
        return "input is required"
    for name in ("prompt", "image"):
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


def render_image(task_input: dict[str, Any]) -> bytes:
    """A PNG of the requested size (at most 1024 px a side) with the prompt drawn on it."""
    from PIL import Image, ImageDraw, ImageFont

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
    draw = ImageDraw.Draw(image)
    size = max(12, width // 24)
    font = ImageFont.load_default(size=size)
    text = "\n".join(textwrap.wrap(f"PiAPI simulator: {prompt}", width=max(10, width // (size // 2 + 1))))
    draw.multiline_text(
        (size, size), text, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0)
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
