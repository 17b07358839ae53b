"""The simulator's faults: scripted and random HTTP answers that go wrong, and connection-level ones.

:class:`Fault` answers are served by the app (an HTTP status, a garbled body, a reset mid-answer);
:class:`FaultyTransport` wraps the in-process transport to refuse connections, lose answers, or
time out, which an ASGI app cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx2
from starlette.responses import JSONResponse, Response

from piapi_mcp.timing import Clock

Route_ = Literal["create", "get", "cancel", "upload", "history", "account", "any"]
#: ``reset`` starts the answer, then drops the connection (over HTTP the client sees a broken
#: answer; in process, :class:`FaultyTransport` turns it into ``httpx2.RemoteProtocolError``).
FaultBody = Literal["envelope", "html", "truncated", "empty", "reset"]
#: Faults ``fault_rate`` draws from: HTTP statuses, a 200 that is not JSON, a dropped connection.
RandomFaultKind = Literal["429", "500", "502", "503", "non_json", "reset"]
RANDOM_FAULT_KINDS: Final[tuple[RandomFaultKind, ...]] = ("429", "500", "502", "503", "non_json", "reset")
#: Random faults that mean PiAPI refused the request: a create meeting one creates nothing.
REFUSING_KINDS: Final = frozenset({"429", "500", "503"})


@dataclass
class Fault:
    """One scripted misbehaviour, served ``times`` times to requests on ``route``."""

    route: Route_ = "any"
    status: int = 500
    body: FaultBody = "envelope"
    retry_after: str | None = None
    times: int = 1


def fault_response(fault: Fault) -> Response:
    """The answer a scripted :class:`Fault` stands for."""
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
    return error_response(fault.status, messages.get(fault.status, "internal error"), headers=headers)


def random_fault_response(kind: RandomFaultKind) -> Response:
    """The answer a random fault of ``kind`` stands for."""
    if kind == "reset":
        return _ResetResponse(200)
    if kind == "non_json":
        return fault_response(Fault(status=200, body="html"))
    if kind == "502":
        return fault_response(Fault(status=502, body="html"))
    return fault_response(Fault(status=int(kind)))


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


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """PiAPI's error envelope: ``{code, data: null, message}`` with ``status``."""
    return JSONResponse(
        {"code": status, "data": None, "message": message}, status_code=status, headers=headers
    )


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
