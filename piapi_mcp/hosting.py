"""Serving MCP over HTTP safely: a bearer-token gate, Host/Origin checks, and a refusal to expose no-auth.

Over stdio only the host that launched the server can talk to it. Over SSE or Streamable HTTP anyone
who reaches the port can spend the PiAPI credits, so:

* :class:`BearerTokenMiddleware` answers ``401`` to every request without
  ``Authorization: Bearer <token>`` before the MCP app sees it (nothing runs, nothing is created);
* :func:`build_http_app` keeps the SDK's DNS-rebinding protection on (Host and Origin allowlists:
  loopback plus the names the operator configures);
* :func:`check_bind` refuses a non-loopback bind address without a token unless told
  ``--insecure-no-auth``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Iterable
from typing import Any, Final, Literal

from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from piapi_mcp.cli import ConfigError

HttpTransport = Literal["sse", "streamable-http"]

AUTH_TOKEN_ENV: Final = "PIAPI_MCP_AUTH_TOKEN"
ALLOWED_HOSTS_ENV: Final = "PIAPI_MCP_ALLOWED_HOSTS"
ALLOWED_ORIGINS_ENV: Final = "PIAPI_MCP_ALLOWED_ORIGINS"

LOOPBACK_HOSTS: Final = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGINS: Final = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")

#: Shorter tokens still work, but the start-up log suggests a stronger one.
RECOMMENDED_TOKEN_LENGTH: Final = 32

_UNAUTHORIZED_BODY: Final = json.dumps(
    {"error": "This server requires an 'Authorization: Bearer <token>' header with its PIAPI_MCP_AUTH_TOKEN."}
).encode()


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


def split_names(raw: str | None) -> tuple[str, ...]:
    """The entries of a comma-separated setting, trimmed, empties dropped."""
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


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
) -> ASGIApp:
    """The ASGI app to host ``server`` (an ``MCPServer``) over ``transport``.

    Host and Origin are always checked (see :func:`transport_security`); with a ``token`` every
    request must also carry it. For Streamable HTTP, ``server.session_manager.run()`` must be
    running while the app serves (uvicorn does it through the app's lifespan).
    """
    security = transport_security(host, allowed_hosts, allowed_origins)
    if transport == "sse":
        app: ASGIApp = server.sse_app(host=host, transport_security=security)
    elif transport == "streamable-http":
        app = server.streamable_http_app(host=host, transport_security=security)
    else:
        raise ValueError(f"not an HTTP transport: {transport!r}")
    return BearerTokenMiddleware(app, token) if token else app


def _has_port(authority: str) -> bool:
    """Whether ``host[:port]`` (IPv6 in brackets) names a port."""
    if "[" in authority:
        return authority.rsplit("]", 1)[-1].count(":") == 1
    return ":" in authority


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
