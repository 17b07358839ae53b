"""Hosting over HTTP safely: the bearer-token gate, Host/Origin checks, and the refusal to expose no-auth.

The MCP server is served on a loopback port by ``build_http_app`` (what ``piapi-mcp`` hosts), over the
PiAPI simulator on a ManualClock, so nothing waits for PiAPI time and nothing binds a public address.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from starlette.types import Message, Receive, Scope, Send

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.cli import build_parser
from piapi_mcp.config import Config, ConfigError
from piapi_mcp.hosting import (
    BearerTokenMiddleware,
    HttpTransport,
    check_bind,
    host_patterns,
    is_loopback,
)
from tests.conftest import hosted
from tests.helpers import TOOLS

pytestmark = pytest.mark.anyio

TOKEN = "test-token-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
EDIT = {"prompt": "make the sky purple", "image": "https://example.com/in.png"}
MODERN = "2026-07-28"
_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
#: A complete stateless (2026-07-28) tools/call, as the SDK client sends it: on its own it creates a task.
TOOLS_CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "kontext_edit", "arguments": EDIT, "_meta": _META},
}
TOOLS_CALL_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": MODERN,
    "Mcp-Method": "tools/call",
    "Mcp-Name": "kontext_edit",
}
BAD_AUTHORIZATION = {
    "no header": None,
    "wrong token": "Bearer not-the-token",
    "token minus its last character": f"Bearer {TOKEN[:-1]}",
    "token plus one character": f"Bearer {TOKEN}x",
    "scheme without token": "Bearer",
    "basic scheme": f"Basic {TOKEN}",
    "token without scheme": TOKEN,
}


def _hosted(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    transport: HttpTransport = "streamable-http",
    *,
    token: str | None = TOKEN,
    allowed_hosts: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
) -> AbstractAsyncContextManager[str]:
    """The hosted app guarded by ``token`` (this file's default) unless told otherwise."""
    return hosted(
        simulator,
        clock,
        http,
        transport,
        token=token,
        allowed_hosts=allowed_hosts,
        allowed_origins=allowed_origins,
    )


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _with_authorization(headers: dict[str, str], authorization: str | None) -> dict[str, str]:
    return headers if authorization is None else {**headers, "Authorization": authorization}


def _assert_unauthorized(response: httpx2.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Bearer" in response.json()["error"]


async def _post_tools_call(url: str, headers: dict[str, str]) -> httpx2.Response:
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as raw:
        return await raw.post(f"{url}/mcp", json=TOOLS_CALL, headers=headers)


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION.values(), ids=BAD_AUTHORIZATION.keys())
async def test_a_tools_call_without_the_right_token_is_refused_with_401_and_creates_no_task(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, authorization: str | None
) -> None:
    """A valid kontext_edit call without the exact bearer token gets 401 and never reaches PiAPI."""
    with anyio.fail_after(20):
        async with _hosted(simulator, clock, http) as url:
            refused = await _post_tools_call(url, _with_authorization(TOOLS_CALL_HEADERS, authorization))
            _assert_unauthorized(refused)
            assert simulator.created_count == 0
            assert simulator.requests == []

            # The very same request with the token runs: the refusal was the token's doing.
            accepted = await _post_tools_call(url, {**TOOLS_CALL_HEADERS, **_bearer()})
            assert accepted.status_code == 200, accepted.text
            assert simulator.created_count == 1


async def test_the_challenge_says_invalid_token_only_when_a_token_was_sent(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """No header gets a plain ``Bearer`` challenge; a wrong token gets ``error="invalid_token"``."""
    with anyio.fail_after(20):
        async with _hosted(simulator, clock, http) as url, httpx2.AsyncClient(trust_env=False) as raw:
            missing = await raw.post(f"{url}/mcp", json=TOOLS_CALL, headers=TOOLS_CALL_HEADERS)
            wrong = await raw.post(
                f"{url}/mcp", json=TOOLS_CALL, headers={**TOOLS_CALL_HEADERS, **_bearer("x")}
            )
    assert missing.headers["www-authenticate"] == "Bearer"
    assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert missing.json() == wrong.json()


@pytest.mark.parametrize("path", ["/mcp", "/", "/sse", "/messages/", "/.well-known/oauth-protected-resource"])
async def test_every_path_of_the_streamable_http_app_needs_the_token(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, path: str
) -> None:
    """Any path, with any method, answers 401 without the token (nothing is served unauthenticated)."""
    with anyio.fail_after(20):
        async with _hosted(simulator, clock, http) as url, httpx2.AsyncClient(trust_env=False) as raw:
            for method in ("GET", "POST", "DELETE", "OPTIONS"):
                _assert_unauthorized(await raw.request(method, f"{url}{path}"))


async def test_the_mcp_client_with_the_token_lists_tools_and_completes_an_edit(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """Over Streamable HTTP, a client sending the bearer token sees the tools and gets a finished edit."""
    with anyio.fail_after(20):
        async with (
            _hosted(simulator, clock, http) as url,
            httpx2.AsyncClient(trust_env=False, headers=_bearer()) as mcp_http,
            Client(streamable_http_client(f"{url}/mcp", http_client=mcp_http)) as client,
        ):
            assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
            done = await client.call_tool("kontext_edit", EDIT)
            assert not done.is_error, done.content
            assert done.structured_content is not None
            assert (done.structured_content["status"], done.structured_content["done"]) == ("completed", True)
    assert simulator.created_count == 1


async def test_the_mcp_client_with_a_wrong_token_cannot_connect_and_creates_nothing(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """A client with the wrong token fails at its first request; PiAPI is never called."""
    with anyio.fail_after(20):
        async with (
            _hosted(simulator, clock, http) as url,
            httpx2.AsyncClient(trust_env=False, headers=_bearer("wrong")) as mcp_http,
        ):
            with pytest.RaisesGroup(MCPError, flatten_subgroups=True):
                async with Client(streamable_http_client(f"{url}/mcp", http_client=mcp_http)) as client:
                    await client.call_tool("kontext_edit", EDIT)
    assert simulator.created_count == 0


@pytest.mark.parametrize("authorization", [None, "Bearer not-the-token"], ids=["no token", "wrong token"])
async def test_sse_stream_and_message_endpoints_answer_401_without_the_token(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, authorization: str | None
) -> None:
    """Over SSE, both ``GET /sse`` and ``POST /messages/`` answer 401 without the token, and nothing runs."""
    headers = _with_authorization({}, authorization)
    with anyio.fail_after(20):
        async with _hosted(simulator, clock, http, "sse") as url, httpx2.AsyncClient(trust_env=False) as raw:
            _assert_unauthorized(await raw.get(f"{url}/sse", headers=headers))
            message = {**TOOLS_CALL, "params": {"name": "kontext_edit", "arguments": EDIT}}
            _assert_unauthorized(
                await raw.post(
                    f"{url}/messages/",
                    params={"session_id": "0123456789abcdef0123456789abcdef"},
                    json=message,
                    headers=headers,
                )
            )
    assert simulator.created_count == 0
    assert simulator.requests == []


async def test_the_sse_client_with_the_token_lists_tools_and_completes_an_edit(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """Over SSE, a client sending the bearer token on the stream and the messages gets a finished edit."""
    with anyio.fail_after(20):
        async with (
            _hosted(simulator, clock, http, "sse") as url,
            Client(sse_client(f"{url}/sse", headers=_bearer())) as client,
        ):
            assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
            done = await client.call_tool("kontext_edit", EDIT)
            assert not done.is_error, done.content
    assert simulator.created_count == 1


async def test_a_request_for_an_unknown_host_name_is_refused_with_421(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """With the right token, ``Host: evil.example`` (a DNS-rebinding shape) still gets 421 and runs nothing."""
    with anyio.fail_after(20):
        async with _hosted(simulator, clock, http) as url:
            response = await _post_tools_call(
                url, {**TOOLS_CALL_HEADERS, **_bearer(), "Host": "evil.example"}
            )
    assert response.status_code == 421, response.text
    assert simulator.created_count == 0


@pytest.mark.parametrize("host", ["mcp.example.com", "mcp.example.com:8443"])
async def test_a_configured_host_name_is_served(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, host: str
) -> None:
    """``allowed_hosts=["mcp.example.com"]`` lets clients that use that name (on any port) in."""
    with anyio.fail_after(20):
        async with (
            _hosted(simulator, clock, http, allowed_hosts=["mcp.example.com"]) as url,
            httpx2.AsyncClient(trust_env=False, headers={**_bearer(), "Host": host}) as mcp_http,
            Client(streamable_http_client(f"{url}/mcp", http_client=mcp_http)) as client,
        ):
            assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
            other = await _post_tools_call(url, {**TOOLS_CALL_HEADERS, **_bearer(), "Host": "evil.example"})
            assert other.status_code == 421


async def test_a_browser_origin_is_refused_unless_configured(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """An unknown ``Origin`` gets 403; a configured one and loopback ones are served."""
    allowed = "https://app.example.com"
    with anyio.fail_after(20):
        async with _hosted(simulator, clock, http, allowed_origins=[allowed]) as url:
            evil = await _post_tools_call(
                url, {**TOOLS_CALL_HEADERS, **_bearer(), "Origin": "https://evil.example"}
            )
            assert evil.status_code == 403, evil.text
            assert simulator.created_count == 0
            for origin in (allowed, "http://localhost:5173"):
                ok = await _post_tools_call(url, {**TOOLS_CALL_HEADERS, **_bearer(), "Origin": origin})
                assert ok.status_code == 200, ok.text


async def test_the_lifespan_scope_passes_through_without_a_token() -> None:
    """The gate only guards requests: the app's lifespan (its session manager) still starts and stops."""
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        raise AssertionError(f"the gate answered a lifespan scope: {message}")

    await BearerTokenMiddleware(inner, TOKEN)({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_addresses_may_serve_without_a_token(host: str) -> None:
    """Loopback binds (127.0.0.0/8, ::1, localhost) need no token."""
    assert is_loopback(host)
    check_bind(host, None, insecure_no_auth=False)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "", "192.168.1.5", "10.0.0.1", "fe80::1", "mcp.example.com"]
)
def test_a_non_loopback_address_without_a_token_is_refused_unless_insecure(host: str) -> None:
    """Other addresses need a token, or the explicit insecure switch."""
    with pytest.raises(ConfigError, match=r"PIAPI_MCP_AUTH_TOKEN.*--insecure-no-auth"):
        check_bind(host, None, insecure_no_auth=False)
    check_bind(host, TOKEN, insecure_no_auth=False)
    check_bind(host, None, insecure_no_auth=True)


def test_host_names_without_a_port_are_allowed_on_any_port() -> None:
    """``--allowed-host`` entries without a port match every port; with one, only that port."""
    assert host_patterns(["mcp.example.com", "10.0.0.5:8000", "fe80::1", "[::2]:9000"]) == [
        "mcp.example.com",
        "mcp.example.com:*",
        "10.0.0.5:8000",
        "[fe80::1]",
        "[fe80::1]:*",
        "[::2]:9000",
    ]


def _config(argv: list[str], env: dict[str, str]) -> Config:
    return Config.load(build_parser().parse_args(argv), env | {"PIAPI_STATE_DIR": "unused"})


def test_the_auth_flag_overrides_the_variable_and_lists_come_comma_separated() -> None:
    """``--auth-token`` wins over PIAPI_MCP_AUTH_TOKEN; flags replace the comma-separated variables."""
    env = {
        "PIAPI_MCP_AUTH_TOKEN": " from-env ",
        "PIAPI_MCP_ALLOWED_HOSTS": "a.example, b.example,",
        "PIAPI_MCP_ALLOWED_ORIGINS": "https://a.example",
    }
    from_env = _config([], env)
    assert from_env.auth_token == "from-env"
    assert from_env.allowed_hosts == ("a.example", "b.example")
    assert from_env.allowed_origins == ("https://a.example",)
    assert not from_env.insecure_no_auth

    flags = ["--auth-token", "from-flag", "--allowed-host", "c.example", "--allowed-host", "d.example"]
    from_flags = _config([*flags, "--allowed-origin", "https://c.example", "--insecure-no-auth"], env)
    assert from_flags.auth_token == "from-flag"
    assert from_flags.allowed_hosts == ("c.example", "d.example")
    assert from_flags.allowed_origins == ("https://c.example",)
    assert from_flags.insecure_no_auth
    assert _config([], {}).auth_token is None


def _minimal_env(**extra: str) -> dict[str, str]:
    """PATH and the test's state folder, and nothing else: no PIAPI_MCP_AUTH_TOKEN of the machine."""
    return {"PATH": os.environ.get("PATH", ""), "PIAPI_STATE_DIR": os.environ["PIAPI_STATE_DIR"], **extra}


async def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(20):
        return await anyio.run_process(
            [sys.executable, "-m", "piapi_mcp", *args], env=env, check=False, stdin=subprocess.DEVNULL
        )


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_serving_on_all_interfaces_without_a_token_is_refused_at_start(transport: str) -> None:
    """``--host 0.0.0.0`` without a token exits 2 with one line naming the variable and the override."""
    done = await _run_cli("--transport", transport, "--host", "0.0.0.0", env=_minimal_env())
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("piapi-mcp: ")
    assert "PIAPI_MCP_AUTH_TOKEN" in lines[0] and "--insecure-no-auth" in lines[0]
    assert done.stdout == b""


async def test_a_token_a_header_cannot_carry_is_refused_at_start_without_printing_it() -> None:
    """A token with a space stops an HTTP transport with status 2; the message does not echo the token."""
    secret = "two words-0123456789"
    done = await _run_cli("--transport", "streamable-http", env=_minimal_env(PIAPI_MCP_AUTH_TOKEN=secret))
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "PIAPI_MCP_AUTH_TOKEN" in err and secret not in err
