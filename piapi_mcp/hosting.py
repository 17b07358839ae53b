"""Serving MCP over HTTP safely: a bearer-token gate, Host/Origin checks, and a refusal to expose no-auth.

Over stdio only the host that launched the server can talk to it. Over SSE or Streamable HTTP anyone
who reaches the port can spend the PiAPI credits, so:

* :class:`BearerTokenMiddleware` answers ``401`` to every request without
  ``Authorization: Bearer <token>`` before the MCP app sees it (nothing runs, nothing is created);
* :func:`build_http_app` keeps the SDK's DNS-rebinding protection on (Host and Origin allowlists:
  loopback plus the names the operator configures);
* :func:`check_bind` refuses a non-loopback bind address without a token unless told
  ``--insecure-no-auth``;
* :func:`serve_http` serves the app with uvicorn so that connections which never finish their
  request headers cannot exhaust the process's file descriptors before the token is even read:
  each such connection is closed after :attr:`HttpLimits.header_timeout`, open connections are
  capped, and at the cap a new connection sheds the oldest one still waiting for its headers (an
  attacker's half-open connections go first; a client that sends its request at once gets in);
  a client that leaves an answer unread for as long is dropped as well, so pipelining requests
  without reading the ``401`` answers cannot hold a place either;
* :class:`WebhookReceiver` takes PiAPI's task webhooks at :data:`WEBHOOK_PATH`, beside ``/mcp``: not
  behind the bearer token (PiAPI does not have it) but behind the webhook's own secret.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import ipaddress
import json
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, Protocol

import anyio
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from piapi_mcp import wording
from piapi_mcp.catalog._spec import MAX_MEDIA_ARGUMENT_CHARS
from piapi_mcp.config import (
    AUTH_TOKEN_ENV,
    ConfigError,
    env_number,
)
from piapi_mcp.config import (
    HEADER_TIMEOUT_ENV as HEADER_TIMEOUT_ENV,
)
from piapi_mcp.config import (
    MAX_CONNECTIONS_ENV as MAX_CONNECTIONS_ENV,
)
from piapi_mcp.config import (
    WEBHOOK_PATH as WEBHOOK_PATH,
)
from piapi_mcp.errors import InvalidResponseError
from piapi_mcp.events import TaskEvents
from piapi_mcp.models import TERMINAL_STATUSES, Task, parse_task

HttpTransport = Literal["sse", "streamable-http"]


#: Seconds a connection has to deliver complete request headers (from its opening, or from the end
#: of its previous answer on a kept-alive connection). A real client sends them at once.
DEFAULT_HEADER_TIMEOUT: Final = 10.0
HEADER_TIMEOUT_RANGE: Final = (0.1, 300.0)
#: Open HTTP connections at most; lowered to half the open-file limit at start (see :func:`connection_cap`).
DEFAULT_MAX_CONNECTIONS: Final = 512
MAX_CONNECTIONS_RANGE: Final = (1, 65536)
#: The largest HTTP request body accepted: the longest media argument (a 10 MB file as a base64
#: ``data:`` URI) plus room for the JSON-RPC envelope and the other arguments.
MAX_REQUEST_BYTES: Final = MAX_MEDIA_ARGUMENT_CHARS + 1024 * 1024
#: A body declared larger is still read (and thrown away, nothing kept) up to this many bytes before
#: the 413 answer, so the client, still sending, reads that answer instead of a connection reset.
_DRAIN_BYTES: Final = 4 * MAX_REQUEST_BYTES
#: How long a cancelled :func:`serve_http` waits for its connections and the app's shutdown.
_SHUTDOWN_GRACE: Final = 5.0

logger = logging.getLogger("piapi_mcp")

LOOPBACK_HOSTS: Final = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGINS: Final = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")

#: Shorter tokens still work, but the start-up log suggests a stronger one.
RECOMMENDED_TOKEN_LENGTH: Final = 32

_UNAUTHORIZED_BODY: Final = json.dumps(
    {"error": "This server requires an 'Authorization: Bearer <token>' header with its PIAPI_MCP_AUTH_TOKEN."}
).encode()


def _too_large_body() -> bytes:
    """The 413 answer's body: a JSON-RPC error whose message says the limit and what to do instead."""
    message = (
        f"The request is larger than this server's {wording.size(MAX_REQUEST_BYTES)} limit (a 10 MB "
        "image as a data: URI fits); give large media as an http(s) URL or a local file path instead."
    )
    return json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}).encode()


_TOO_LARGE_BODY: Final = _too_large_body()


class RequestSizeMiddleware:
    """Answers an HTTP request over :data:`MAX_REQUEST_BYTES` with ``413`` and a JSON-RPC error sentence.

    A body declared too large is drained (up to :data:`_DRAIN_BYTES`, nothing kept) before the answer,
    so the client reads the 413 rather than a reset; one streamed without a length is cut off by the
    SDK's own limit (set to the same size), whose plain-text 413 is rewritten into the same sentence.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse or pass the request on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
            await self._drain(receive)
            await self._answer(send)
            return
        rewriting = False

        async def send_rewritten(message: Any) -> None:
            nonlocal rewriting
            if message["type"] == "http.response.start" and message.get("status") == 413:
                rewriting = True
                await self._answer(send)
            elif not rewriting:
                await send(message)

        await self.app(scope, receive, send_rewritten)

    @staticmethod
    async def _drain(receive: Receive) -> None:
        drained = 0
        while drained <= _DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    @staticmethod
    async def _answer(send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_TOO_LARGE_BODY)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": _TOO_LARGE_BODY})


class BearerTokenMiddleware:
    """Lets an HTTP request through only with ``Authorization: Bearer <token>``; otherwise ``401``.

    Every path is guarded (``/mcp``, ``/sse``, ``/messages/``, anything else); only the ``lifespan``
    scope passes untouched. The comparison is constant-time over the bytes of the token, and a
    rejected request never reaches the wrapped app.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("BearerTokenMiddleware needs a non-empty token")
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        presented = _bearer_credentials(scope.get("headers", ()))
        # compare_digest runs even without a header, so a missing token takes the same path.
        if hmac.compare_digest(presented or b"", self._token) and presented is not None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        challenge = b"Bearer" if presented is None else b'Bearer error="invalid_token"'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_UNAUTHORIZED_BODY)).encode()),
                    (b"www-authenticate", challenge),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _UNAUTHORIZED_BODY})


def _bearer_credentials(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The token of the one ``Authorization: Bearer`` header, or ``None`` (absent, repeated, other scheme)."""
    values = [value for name, value in headers if name.lower() == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, credentials = values[0].strip().partition(b" ")
    credentials = credentials.strip(b" \t")
    if scheme.lower() != b"bearer" or not credentials:
        return None
    return credentials


def validate_token(token: str) -> str:
    """``token`` if a client can send it in a header (visible ASCII, no spaces).

    Raises:
        ConfigError: the token holds a space, a control or a non-ASCII character.
    """
    if not all("!" <= char <= "~" for char in token):
        raise ConfigError(
            f"the auth token ({AUTH_TOKEN_ENV} or --auth-token) must be printable ASCII without spaces, "
            "since clients send it as 'Authorization: Bearer <token>'."
        )
    return token


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine: 127.0.0.0/8, ::1 or localhost."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, insecure_no_auth: bool) -> None:
    """Refuse to serve without a token on an address other machines can reach.

    Raises:
        ConfigError: ``host`` is not loopback, no token is set and ``insecure_no_auth`` is false.
    """
    if token or insecure_no_auth or is_loopback(host):
        return
    raise ConfigError(
        f"refusing to serve on {host or 'all interfaces'} without authentication (anyone who reaches the "
        f"port could spend your PiAPI credits): set {AUTH_TOKEN_ENV} to a long random secret, or pass "
        "--insecure-no-auth if something in front of this server already authenticates callers."
    )


def host_patterns(names: Iterable[str]) -> list[str]:
    """Host-header allowlist entries for ``names``; a name without a port is allowed on any port.

    ``mcp.example.com`` becomes ``mcp.example.com`` and ``mcp.example.com:*``; ``mcp.example.com:443``
    stays as given; a bare IPv6 address is bracketed.
    """
    patterns: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        try:
            if ipaddress.ip_address(name).version == 6:
                name = f"[{name}]"
        except ValueError:
            pass
        patterns += [name] if _has_port(name) else [name, f"{name}:*"]
    return _unique(patterns)


def origin_patterns(origins: Iterable[str]) -> list[str]:
    """Origin-header allowlist entries: each origin as given (no trailing ``/``), plus any port if none."""
    patterns: list[str] = []
    for raw in origins:
        origin = raw.strip().rstrip("/")
        if not origin:
            continue
        patterns += [origin] if _has_port(origin.split("://", 1)[-1]) else [origin, f"{origin}:*"]
    return _unique(patterns)


def transport_security(
    host: str, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()
) -> TransportSecuritySettings:
    """The SDK's DNS-rebinding settings: loopback names, the bind address itself, and configured names.

    A wildcard bind address (``0.0.0.0``, ``::``) is not a name clients use, so it is not added:
    list the names or addresses clients connect with (``--allowed-host``).
    """
    own: list[str] = []
    if host and not is_loopback(host):
        try:
            if not ipaddress.ip_address(host.strip("[]")).is_unspecified:
                own.append(host)
        except ValueError:
            own.append(host)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=_unique([*LOOPBACK_HOSTS, *host_patterns([*own, *allowed_hosts])]),
        allowed_origins=_unique([*LOOPBACK_ORIGINS, *origin_patterns(allowed_origins)]),
    )


def build_http_app(
    server: Any,
    transport: HttpTransport,
    *,
    host: str = "127.0.0.1",
    token: str | None = None,
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (),
    stateless: bool = False,
    webhooks: WebhookReceiver | None = None,
) -> ASGIApp:
    """The ASGI app to host ``server`` (an ``MCPServer``) over ``transport``.

    Host and Origin are always checked (see :func:`transport_security`); with a ``token`` every
    request must also carry it. For Streamable HTTP, ``server.session_manager.run()`` must be
    running while the app serves (uvicorn does it through the app's lifespan).

    ``stateless`` (Streamable HTTP only): no ``Mcp-Session-Id``, every request stands alone, so any
    replica behind a load balancer answers any request. Answers stay event streams (never
    ``json_response``, which drops progress), so a tool call's progress still reaches its caller on
    the same response. ``webhooks``: PiAPI's task webhooks are taken at :data:`WEBHOOK_PATH`, outside
    the bearer token and the Host check (their own secret guards them).
    """
    security = transport_security(host, allowed_hosts, allowed_origins)
    # The SDK's 4 MiB default would refuse a 10 MB image given as a data: URI (PiAPI's upload limit).
    limit = {"transport_security": security, "max_request_body_size": MAX_REQUEST_BYTES}
    if transport == "sse":
        if stateless:
            raise ValueError("stateless serving is a Streamable HTTP mode; SSE keeps a session per client")
        app: ASGIApp = server.sse_app(host=host, **limit)
    elif transport == "streamable-http":
        app = server.streamable_http_app(host=host, stateless_http=stateless, json_response=False, **limit)
    else:
        raise ValueError(f"not an HTTP transport: {transport!r}")
    app = RequestSizeMiddleware(app)
    if token:
        app = BearerTokenMiddleware(app, token)
    return app if webhooks is None else _WebhookRoute(webhooks, app)


#: The largest webhook body taken: a task's ``data`` with its outputs' URLs is a few KiB.
MAX_WEBHOOK_BYTES: Final = 256 * 1024
_WEBHOOK_SECRET_HEADER: Final = b"x-webhook-secret"


class _WebhookRoute:
    """Sends :data:`WEBHOOK_PATH` to the receiver and everything else (lifespan included) to ``app``."""

    def __init__(self, receiver: WebhookReceiver, app: ASGIApp) -> None:
        self.receiver = receiver
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch by path."""
        if scope["type"] == "http" and scope.get("path", "").rstrip("/") == WEBHOOK_PATH:
            await self.receiver(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class WebhookLedger(Protocol):
    """What the webhook route needs of the task ledger (any backend's public async methods)."""

    async def get(self, task_id: str) -> Any:
        """The entry of a task this deployment created (with a ``status``), or ``None``."""
        ...

    async def record_seen(self, task: Task, local_paths: list[str] | None = None) -> bool:
        """Store the latest state of a known task."""
        ...


class WebhookReceiver:
    """PiAPI's task webhooks: checked, recorded in the ledger, and announced to the waiting call.

    PiAPI posts ``{"timestamp": ..., "data": <the task, as get-task answers it>}`` with the secret
    of the create's ``webhook_config`` in ``x-webhook-secret``, on the task's changes (created,
    logs, output, completed or failed). The body is untrusted like any upstream answer: it is read
    only with the right secret (compared in constant time), up to :data:`MAX_WEBHOOK_BYTES`, through
    the same strict parser as PiAPI's answers, and only for a task this deployment created (the
    ledger knows it). Then the ledger takes its status (unless it already holds an end state; never
    its output URLs) and the task's event wakes whoever waits on it, which asks PiAPI for the task
    itself: the body never becomes a result.

    Answers: ``200`` for a webhook taken, and also for one about a task this deployment did not
    create (ignored; the answer does not tell which, and PiAPI need not retry), ``401`` without the
    right secret (nothing read further), ``405`` for another method, ``413`` over the size limit,
    ``400`` for a body that is not a task, ``503`` when the ledger cannot be read (PiAPI may retry).
    """

    def __init__(self, secret: str, ledger: WebhookLedger, events: TaskEvents) -> None:
        if not secret:
            raise ValueError("WebhookReceiver needs a non-empty secret")
        self._secret = secret.encode()
        self._ledger = ledger
        self._events = events
        #: Webhooks taken (200, task known), ignored (200, task unknown) and refused (any other answer).
        self.taken = 0
        self.ignored = 0
        self.refused = 0

    def __repr__(self) -> str:
        return "WebhookReceiver(secret=<hidden>)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one webhook request."""
        status, text = await self._handle(scope, receive)
        if status != 200:
            self.refused += 1
        body = json.dumps({"ok": status == 200} if status == 200 else {"error": text}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if status == 405:
            headers.append((b"allow", b"POST"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, str]:
        if scope.get("method") != "POST":
            return 405, "Only POST is accepted here."
        headers = scope.get("headers", ())
        presented = [value for name, value in headers if name.lower() == _WEBHOOK_SECRET_HEADER]
        given = presented[0] if len(presented) == 1 else b""
        # compare_digest runs even without a header, so a missing secret takes the same path.
        if not hmac.compare_digest(given, self._secret) or len(presented) != 1:
            return 401, "Missing or wrong x-webhook-secret."
        raw = await _read_capped(scope, receive, MAX_WEBHOOK_BYTES)
        if raw is None:
            return 413, f"The body is larger than {wording.size(MAX_WEBHOOK_BYTES)}."
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):
            return 400, "The body is not JSON."
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            return 400, "The body is not a PiAPI task webhook ({timestamp, data})."
        try:
            task = parse_task(payload["data"])
        except InvalidResponseError:
            return 400, "The body does not describe a PiAPI task."
        try:
            entry = await self._ledger.get(task.task_id)
            if entry is None:
                self.ignored += 1
                logger.info("webhook for a task this deployment did not create: ignored")
                return 200, ""
            if entry.status not in TERMINAL_STATUSES:
                # Its status, usage and error only: output URLs are taken from PiAPI's own answer to a
                # get (the woken waiter's, or a later get_task's), which the output guard then judges.
                await self._ledger.record_seen(task.model_copy(update={"outputs": [], "output": None}))
        except Exception as err:  # the ledger's own failure (a database outage): PiAPI may retry
            logger.warning("webhook for PiAPI task %s not recorded (%s)", task.task_id, type(err).__name__)
            return 503, "The task ledger is unavailable; try again."
        self.taken += 1
        logger.info("webhook: PiAPI task %s is %s", task.task_id, task.status)
        # PiAPI also posts on log and output updates: only a new status or an end is worth a poll.
        if task.done or task.status != entry.status:
            await self._events.notify(task.task_id)
        return 200, ""


async def _read_capped(scope: Scope, receive: Receive, cap: int) -> bytes | None:
    """The request body, or ``None`` when it is (or says it is) longer than ``cap`` bytes."""
    declared = dict(scope.get("headers") or ()).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


@dataclass(frozen=True)
class HttpLimits:
    """How :func:`serve_http` protects itself from connections that hold resources without asking anything."""

    #: Seconds to deliver complete request headers, counted from the connection's opening (or the end
    #: of its previous answer); bytes trickled in meanwhile do not extend it. Also how long a client
    #: may leave an answer unread (the write buffer above its high-water mark) before it is dropped.
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    #: Open connections at most (further lowered to half the open-file limit, see :func:`connection_cap`).
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> HttpLimits:
        """Limits from ``PIAPI_MCP_HEADER_TIMEOUT`` (seconds) and ``PIAPI_MCP_MAX_CONNECTIONS``, or defaults.

        Raises:
            ConfigError: a value that is not a number, or out of range.
        """
        low, high = HEADER_TIMEOUT_RANGE
        timeout = env_number(env, HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT, low, high, "seconds")
        first, last = MAX_CONNECTIONS_RANGE
        connections = env_number(
            env, MAX_CONNECTIONS_ENV, DEFAULT_MAX_CONNECTIONS, first, last, "connections"
        )
        if connections != int(connections):
            raise ConfigError(
                f"{MAX_CONNECTIONS_ENV} must be a whole number of connections (got {connections:g})."
            )
        return cls(header_timeout=timeout, max_connections=int(connections))


def connection_cap(requested: int) -> int:
    """``requested``, lowered to half the process's open-file limit so that inbound connections alone
    can never use every descriptor (the other half is for PiAPI requests, downloads, the ledger, logs)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return requested
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested
    return max(1, min(requested, soft // 2))


_REFUSED_BODY: Final = b"This server has too many open connections; try again in a moment.\n"
_REFUSED: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"retry-after: 1\r\ncontent-length: " + str(len(_REFUSED_BODY)).encode() + b"\r\n\r\n" + _REFUSED_BODY
)


class _ConnectionGuard:
    """The open connections of one server: how many, and which are waiting for request headers, oldest first.

    Per connection this costs one timer and one entry in an ordered dict; admitting, shedding and
    timing out are O(1).
    """

    def __init__(self, header_timeout: float, cap: int) -> None:
        self.header_timeout = header_timeout
        self.cap = cap
        self.open = 0
        #: Connections with no request in progress (new, or kept alive after an answer), oldest first.
        self.waiting: OrderedDict[_GuardedH11Protocol, None] = OrderedDict()
        self.shed = 0
        self.timed_out = 0
        self.refused = 0
        self._next_report = 1

    def protocol_class(self) -> type[_GuardedH11Protocol]:
        """A protocol class bound to this guard, for ``uvicorn.Config(http=...)``."""
        return type("GuardedH11Protocol", (_GuardedH11Protocol,), {"guard": self})

    def admit(self, newcomer: _GuardedH11Protocol) -> bool:
        """Count ``newcomer`` in; at the cap, first shed the oldest waiting connection. False if none is."""
        if self.open >= self.cap:
            if not self.waiting:
                self.refused += 1
                self._report()
                return False
            victim, _ = self.waiting.popitem(last=False)
            self.shed += 1
            victim.drop()
            self._report()
        self.open += 1
        return True

    def _report(self) -> None:
        # At the 1st, 10th, 100th… event: a flood is visible in the log without one line per connection.
        events = self.shed + self.refused
        if events < self._next_report:
            return
        self._next_report *= 10
        logger.warning(
            "HTTP connection cap of %d reached: %d connections that had not sent their request shed, "
            "%d refused while all were busy (%s sets the cap)",
            self.cap,
            self.shed,
            self.refused,
            MAX_CONNECTIONS_ENV,
        )


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for request headers and a place under the connection cap.

    A connection is *waiting* from its opening until its request headers are parsed, and again from
    the end of each answer until the next request's headers: while waiting it has
    ``guard.header_timeout`` seconds in all (trickled bytes do not extend them) and may be shed to
    make room. While a request is being answered it is left alone (streams and long tool calls run
    as long as they need) unless the client stops reading: when the answer piles up unread (the
    transport pauses writing) for ``guard.header_timeout`` seconds, the connection is dropped too,
    or a client pipelining requests without reading the answers would hold its place forever.
    A dropped connection with output still unsent is aborted, so its descriptor is freed at once.
    """

    guard: ClassVar[_ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counted = False
        self._deadline: asyncio.TimerHandle | None = None
        self._stalled: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Admit the connection under the cap and start its header deadline, or answer 503 and close."""
        super().connection_made(transport)
        if not self.guard.admit(self):
            transport.write(_REFUSED)
            transport.close()
            return
        self._counted = True
        self._wait_for_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        """Leave the guard's books, then let uvicorn clean up."""
        self._stop_waiting()
        self._writing_resumed()
        if self._counted:
            self._counted = False
            self.guard.open -= 1
        super().connection_lost(exc)

    def handle_events(self) -> None:
        """Parse as uvicorn does; once a request's headers are complete, the connection stops waiting."""
        super().handle_events()
        if self._answering():
            self._stop_waiting()

    def on_response_complete(self) -> None:
        """After an answer the connection waits for its next request's headers, on a new deadline.

        A connection uvicorn is closing waits too: if its client never reads the rest of the answer,
        the deadline aborts it instead of letting it hold a descriptor.
        """
        super().on_response_complete()
        if not self._answering():
            self._wait_for_headers()

    def pause_writing(self) -> None:
        """The client is not reading as fast as we answer: it has ``header_timeout`` seconds to catch up."""
        super().pause_writing()
        if self._stalled is None:
            self._stalled = self.loop.call_later(self.guard.header_timeout, self._out_of_time)

    def resume_writing(self) -> None:
        """The client caught up with the answer."""
        super().resume_writing()
        self._writing_resumed()

    def drop(self) -> None:
        """Close the connection (shed, or out of time); it leaves the count at once.

        With output still unsent it is aborted: that client is not reading, and a graceful close would
        keep the descriptor until it does.
        """
        self._stop_waiting()
        self._writing_resumed()
        if self._counted:
            self._counted = False
            self.guard.open -= 1
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        elif not self.transport.is_closing():
            self.transport.close()

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _wait_for_headers(self) -> None:
        self._stop_waiting()
        self._deadline = self.loop.call_later(self.guard.header_timeout, self._out_of_time)
        self.guard.waiting[self] = None

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.guard.waiting.pop(self, None)

    def _writing_resumed(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def _out_of_time(self) -> None:
        self.guard.timed_out += 1
        self.drop()


class _Server(uvicorn.Server):
    """uvicorn's server, telling ``on_started`` its port once it listens."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[int], object] | None) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Bind and listen as uvicorn does, then report the bound port (useful with port 0)."""
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            listening = self.servers[0].sockets
            self._on_started(listening[0].getsockname()[1] if listening else self.config.port)


async def serve_http(
    app: ASGIApp,
    host: str,
    port: int,
    limits: HttpLimits | None = None,
    *,
    on_started: Callable[[int], object] | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` with uvicorn, as ``piapi-mcp`` does, until SIGINT/SIGTERM or cancelled.

    Request headers must be complete within ``limits.header_timeout`` seconds, and at most
    :func:`connection_cap` connections are open: at the cap a new connection sheds the oldest one
    still waiting for its headers, or, when every connection is busy answering, is itself answered
    ``503`` and closed. A client that leaves the answer unread for ``limits.header_timeout`` seconds
    is dropped. ``on_started`` gets the bound port once the socket listens. The app's
    lifespan runs (Streamable HTTP's session manager lives there). WebSocket upgrades are not
    served: MCP does not use them, and the guard only follows HTTP connections.
    """
    limits = limits or HttpLimits()
    check_port_free(host, port)
    cap = connection_cap(limits.max_connections)
    if cap < limits.max_connections:
        logger.warning(
            "HTTP connection cap lowered from %d to %d, half the open-file limit (raise it with ulimit -n)",
            limits.max_connections,
            cap,
        )
    logger.info(
        "HTTP limits: request headers within %g s, at most %d open connections (%s, %s)",
        limits.header_timeout,
        cap,
        HEADER_TIMEOUT_ENV,
        MAX_CONNECTIONS_ENV,
    )
    guard = _ConnectionGuard(limits.header_timeout, cap)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", http=guard.protocol_class(), ws="none"
    )
    server = _Server(config, on_started)
    try:
        await server.serve()
    except SystemExit:
        # uvicorn exits the process when it cannot bind (the port taken between the check and now).
        if server.started:
            raise
        raise ConfigError(_busy(host, port)) from None
    except anyio.get_cancelled_exc_class():
        # Cancelled inside uvicorn's main loop: close the listener and connections and run the app's
        # shutdown here, or they would outlive the caller.
        if server.started:
            with anyio.move_on_after(_SHUTDOWN_GRACE, shield=True):
                await server.shutdown()
        raise


def check_port_free(host: str, port: int) -> None:
    """Refuse, before uvicorn tries, a ``host:port`` that cannot be bound (uvicorn would log and exit).

    Raises:
        ConfigError: one sentence naming the address and what to do (``--port``).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as err:
        raise ConfigError(f"Cannot listen on {host!r}: {err.strerror or err}; check --host.") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        if os.name != "nt":
            # As asyncio's server does: a port left in TIME_WAIT is free, one with a listener is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                raise ConfigError(_busy(host, port)) from None
            raise ConfigError(
                f"Cannot listen on {host}:{port}: {err.strerror or err}; pick another --host or --port."
            ) from None


def _busy(host: str, port: int) -> str:
    return (
        f"Port {port} on {host} is already in use (another piapi-mcp, or another program): "
        "stop it or pick another port with --port."
    )


def _has_port(authority: str) -> bool:
    """Whether ``host[:port]`` (IPv6 in brackets) names a port."""
    if "[" in authority:
        return authority.rsplit("]", 1)[-1].count(":") == 1
    return ":" in authority


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
