"""Shared fixtures: a PiAPI simulator on a manual clock, the MCP server over it, MCP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client

from piapi_mcp import (
    ManualClock,
    PiAPIClient,
    PiAPISimulator,
    ServerSettings,
    SimulatorControls,
    create_server,
)
from piapi_mcp.hosting import HttpTransport, build_http_app
from piapi_mcp.loopback import serve_app_on_loopback
from tests.postgres import LedgerFactory, PostgresServer, find_bin_dir, unavailable

API_KEY = "test-key-0123456789abcdef"
SIM_BASE_URL = "http://piapi.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every server a test starts keeps its state and outputs in the test's own folder, never the user's."""
    path = tmp_path / "state"
    monkeypatch.setenv("PIAPI_STATE_DIR", str(path))
    monkeypatch.setenv("PIAPI_OUTPUT_DIR", str(tmp_path / "saved-outputs"))
    return path


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def simulator(clock: ManualClock) -> PiAPISimulator:
    return PiAPISimulator(clock, SimulatorControls(api_keys=frozenset({API_KEY})))


@dataclass
class Progress:
    """Records progress notifications of one call."""

    seen: list[tuple[float, float | None, str | None]] = field(default_factory=list)

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message))

    @property
    def messages(self) -> list[str]:
        return [message or "" for _, _, message in self.seen]


@pytest.fixture
def progress() -> Progress:
    return Progress()


def make_server(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    *,
    api_key: str | None = API_KEY,
    **settings: Any,
) -> Any:
    client = PiAPIClient(
        http,
        api_key=api_key,
        base_url=SIM_BASE_URL,
        upload_url=f"{SIM_BASE_URL}/api/ephemeral_resource",
        clock=clock,
        jitter=lambda: 0.5,
    )
    settings.setdefault("resolver", resolver_for(TEST_HOSTS))
    if _BACKENDS and _BACKENDS[-1].kind != "sqlite":
        settings.setdefault("ledger", _BACKENDS[-1].make(clock))
    return create_server(client, ServerSettings(clock=clock, **settings))


#: What the made-up host names of the tests stand for: the simulator's host is on loopback (as the
#: sandbox's is), and nothing else resolves, so no test ever asks a real DNS server.
TEST_HOSTS: dict[str, list[str]] = {"piapi.test": ["127.0.0.1"]}


def resolver_for(hosts: dict[str, list[str]]) -> Any:
    """A resolver that knows only ``hosts`` (an ``OSError`` for every other name)."""

    async def resolve(host: str) -> list[str]:
        if host.lower() not in hosts:
            raise OSError(f"{host} is not a test host")
        return hosts[host.lower()]

    return resolve


@asynccontextmanager
async def hosted(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    transport: HttpTransport = "streamable-http",
    *,
    token: str | None = None,
    allowed_hosts: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
) -> AsyncIterator[str]:
    """The HTTP app ``piapi-mcp`` hosts, over the simulator, on a loopback port; yields its base URL."""
    server = make_server(simulator, clock, http)
    app = build_http_app(
        server,
        transport,
        host="127.0.0.1",
        token=token,
        allowed_hosts=allowed_hosts,
        allowed_origins=allowed_origins,
    )
    if transport == "sse":
        async with serve_app_on_loopback(app) as url:
            yield url
    else:
        # serve_app_on_loopback runs no lifespan; the session manager is the app's lifespan.
        async with server.session_manager.run(), serve_app_on_loopback(app) as url:
            yield url


@pytest.fixture
async def http(simulator: PiAPISimulator) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(simulator.app), base_url=SIM_BASE_URL
    ) as client:
        yield client


@pytest.fixture(params=["auto", "legacy"])
async def mcp_client(
    request: pytest.FixtureRequest, simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> AsyncIterator[Client]:
    """An MCP client session, in memory, in both protocol eras, on a server over the simulator."""
    server = make_server(simulator, clock, http)
    async with Client(server, raise_exceptions=True, mode=request.param) as client:
        yield client


# --- ledger backends (SQLite, PostgreSQL) ------------------------------------------------------------

#: The running test's ``ledger_backend``: servers ``make_server`` builds without a ledger use it.
_BACKENDS: list[LedgerFactory] = []


def current_backend() -> LedgerFactory | None:
    """The running test's ``ledger_backend``, if it uses one."""
    return _BACKENDS[-1] if _BACKENDS else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for the session (skipped where PostgreSQL is absent, failed under CI)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        unavailable("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin)")
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        unavailable("psycopg and psycopg-pool are not installed (pip install -e '.[dev]')")
    assert bin_dir is not None
    server = PostgresServer(bin_dir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(params=["sqlite", "postgres"])
async def ledger_backend(request: pytest.FixtureRequest, state_dir: Path) -> AsyncIterator[LedgerFactory]:
    """The test's ledgers on each backend; servers built by ``make_server`` use it by default."""
    if request.param == "sqlite":
        factory = LedgerFactory("sqlite", state_dir)
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        factory = LedgerFactory("postgres", state_dir, server.new_database())
    _BACKENDS.append(factory)
    try:
        yield factory
    finally:
        _BACKENDS.remove(factory)
        await factory.close()
