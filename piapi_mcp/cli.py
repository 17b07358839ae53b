"""The ``piapi-mcp`` command: serve over stdio / SSE / Streamable HTTP, run the demo or the simulator.

    piapi-mcp                                   stdio MCP server (what MCP hosts launch)
    piapi-mcp --transport streamable-http       HTTP on 127.0.0.1:8000/mcp (sse: /sse)
    PIAPI_MCP_AUTH_TOKEN=... piapi-mcp --transport streamable-http --host 0.0.0.0
                                                HTTP for other machines: every request needs the token
    piapi-mcp --sandbox                         against the built-in PiAPI simulator, no key needed
    piapi-mcp demo                              one full kontext_edit through a real MCP session
    piapi-mcp simulator --port 8765             the PiAPI simulator alone, for tests and benchmarks

Logs go to stderr only: on stdio, stdout is the protocol.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio

from piapi_mcp._version import package_version
from piapi_mcp.client import DEFAULT_BASE_URL, PiAPIClient, default_http_client, upload_url_for
from piapi_mcp.config import (
    AUTH_TOKEN_ENV,
    LEDGER_FILE_NAME,
    LOG_LEVEL_ENV,
    LOG_LEVELS,
    PUBLIC_URL_ENV,
    WEBHOOK_PATH,
    WEBHOOK_SECRET_ENV,
    WEBHOOK_SECRET_FILE,
    Config,
    ConfigError,
    log_level,
    settings_help,
    webhook_secret,
)
from piapi_mcp.loopback import serve_app_on_loopback

if TYPE_CHECKING:
    from piapi_mcp.events import TaskEvents
    from piapi_mcp.server_settings import ServerSettings, WebhookTarget
    from piapi_mcp.waiting import DurationEstimator

SANDBOX_API_KEY: Final = "sandbox-key-not-a-secret"
DEMO_PROMPT: Final = "make the sky purple and add the word Pineapple in big letters"
_TRANSPORTS: Final = ("stdio", "sse", "streamable-http")

logger = logging.getLogger("piapi_mcp")


def build_parser() -> argparse.ArgumentParser:
    """The command line, with ``demo`` and ``simulator`` as sub-commands and serving as the default."""
    parser = argparse.ArgumentParser(
        prog="piapi-mcp",
        description="PiAPI (Flux Kontext image editing) as MCP tools. Without a sub-command, serves MCP.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    _add_server_flags(parser)
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser("demo", help="run one kontext_edit end to end through an MCP session")
    demo.add_argument("--prompt", default=DEMO_PROMPT, help="the edit to ask for")
    demo.add_argument(
        "--image",
        default=None,
        help="the picture to edit: a URL or a local file (default: one drawn for the demo)",
    )
    demo.add_argument("--wait-seconds", type=float, default=None, help="budget of each tool call")
    demo.add_argument(
        "--sandbox",
        action="store_true",
        # Only when given: the main parser's --sandbox (before ``demo``) must not be reset to False.
        default=argparse.SUPPRESS,
        help="use the built-in PiAPI simulator even when PIAPI_API_KEY is set (no credits used)",
    )
    config = commands.add_parser(
        "config",
        help="print a Claude Desktop config entry for this installation (JSON on stdout, notes on stderr)",
    )
    config.add_argument(
        "--allowed-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder local pictures may be read from (repeatable; default: the Pictures, Desktop and "
        "Downloads folders in your home folder that exist)",
    )
    config.add_argument(
        "--sandbox",
        action="store_true",
        # Only when given: the main parser's --sandbox (before ``config``) must not be reset to False.
        default=argparse.SUPPRESS,
        help="start the server on its built-in PiAPI simulator (no key, no credits)",
    )
    commands.add_parser(
        "doctor", help="check the key (free), the image, state and output folders; one line per check"
    )
    sim = commands.add_parser("simulator", help="serve the PiAPI simulator alone over HTTP")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--duration", type=float, default=10.0, help="seconds a task spends processing")
    sim.add_argument("--queue-seconds", type=float, default=1.0, help="seconds a task stays pending")
    sim.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests answered with a random fault (0)"
    )
    sim.add_argument("--fault-seed", type=int, default=0, help="seed of the random faults")
    sim.add_argument(
        "--webhooks",
        action="store_true",
        help="post each task's end to the webhook endpoint its create asked for, as PiAPI does",
    )
    sim.add_argument(
        "--webhook-delay", type=float, default=0.0, help="seconds between a task's end and its webhook"
    )
    return parser


def _add_server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=_TRANSPORTS, default="stdio", help="default: stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    http = parser.add_argument_group(
        "HTTP hosting security (sse and streamable-http only)",
        "A bind address other than loopback needs a token, or --insecure-no-auth.",
    )
    http.add_argument(
        "--auth-token",
        default=None,
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on every request; overrides env PIAPI_MCP_AUTH_TOKEN, "
        "which is preferred (a flag is visible to other users in ps)",
    )
    http.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow a non-loopback --host without a token (only behind something that authenticates)",
    )
    http.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        metavar="NAME",
        help="a Host name clients use besides loopback, e.g. mcp.example.com (repeatable; replaces "
        "env PIAPI_MCP_ALLOWED_HOSTS, comma-separated); without :PORT any port is accepted",
    )
    http.add_argument(
        "--allowed-origin",
        action="append",
        default=None,
        metavar="URL",
        help="a browser Origin allowed besides loopback, e.g. https://app.example.com (repeatable; "
        "replaces env PIAPI_MCP_ALLOWED_ORIGINS, comma-separated)",
    )
    http.add_argument(
        "--stateless",
        action="store_true",
        help="streamable-http without sessions, so any replica behind a load balancer answers any request "
        "(env PIAPI_MCP_STATELESS=1); progress still streams on each call's response",
    )
    parser.add_argument("--sandbox", action="store_true", help="use the built-in PiAPI simulator (no key)")
    parser.add_argument(
        "--base-url", default=None, help=f"PiAPI base URL (env PIAPI_BASE_URL; {DEFAULT_BASE_URL})"
    )
    parser.add_argument(
        "--wait-seconds", type=float, default=None, help="default wait budget (env PIAPI_WAIT_SECONDS)"
    )
    parser.add_argument(
        "--http-timeout", type=float, default=None, help="seconds per PiAPI request (env PIAPI_HTTP_TIMEOUT)"
    )
    parser.add_argument(
        "--log-level",
        default=None,
        metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS).lower()}, any case (env {LOG_LEVEL_ENV}; default info); "
        "other libraries log warnings only",
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``piapi-mcp`` console script and ``python -m piapi_mcp``."""
    args = build_parser().parse_args(argv)
    try:
        _setup_logging(log_level(args.log_level))
    except ConfigError as err:
        print(f"piapi-mcp: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        if args.command == "simulator":
            anyio.run(_run_simulator, args)
            return
        if args.command == "config":
            from piapi_mcp.desktop_config import desktop_entry, this_installation

            entry = desktop_entry(this_installation(), allowed_dirs=args.allowed_dir, sandbox=args.sandbox)
            for note in entry.notes:
                print(note, file=sys.stderr)
            print(entry.json())
            return
        config = Config.load(args)
        if args.command == "doctor":
            sys.exit(anyio.run(doctor, config))
        if args.command == "demo":
            from piapi_mcp.demo import run_demo

            sys.exit(anyio.run(run_demo, config, args.prompt, args.image, args.wait_seconds))
        if args.transport == "stdio" and sys.stdin is not None and sys.stdin.isatty():
            print(TERMINAL_NOTICE, file=sys.stderr, flush=True)
        anyio.run(serve, config, args.transport, args.host, args.port)
    except ConfigError as err:
        print(f"piapi-mcp: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


TERMINAL_NOTICE: Final = (
    "piapi-mcp is a stdio MCP server: it is waiting for an MCP host (Claude Desktop, Claude Code...) "
    "to talk to it on stdin. To see it work, run `piapi-mcp demo`; to install it in a host, "
    "`piapi-mcp config`. Ctrl-C quits."
)


def _setup_logging(level: str) -> None:
    """Our logs at ``level`` on stderr; other libraries' (httpx2, httpcore2, uvicorn, mcp) at WARNING and up.

    Their INFO and DEBUG lines (every request, every protocol message) are noise on a host's log pane.
    """
    logging.basicConfig(
        stream=sys.stderr,
        level=max(logging.WARNING, logging.getLevelNamesMapping()[level]),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("piapi_mcp").setLevel(level)


async def serve(config: Config, transport: str, host: str, port: int) -> None:
    """Run the MCP server on ``transport`` until it is stopped.

    Raises:
        ConfigError: an HTTP transport on a non-loopback ``host`` without a token, or with a token a
            header cannot carry (raised before anything is bound); a ``PIAPI_LEDGER_URL`` database
            that cannot be reached, or that a newer piapi-mcp set up.
    """
    if transport != "stdio":
        # Only HTTP hosting needs uvicorn and its checks: a stdio start does not import them.
        from piapi_mcp.hosting import check_bind, validate_token

        if config.auth_token:
            validate_token(config.auth_token)
        check_bind(host, config.auth_token, config.insecure_no_auth)
        if config.stateless and transport != "streamable-http":
            raise ConfigError(
                "--stateless (PIAPI_MCP_STATELESS) applies to --transport streamable-http only; SSE keeps "
                "a session per client."
            )
    elif config.auth_token:
        logger.info("stdio transport: the auth token is not used (only HTTP transports check it)")
    webhook = _webhook_target(config, transport)
    from piapi_mcp.listings import ListingSettings
    from piapi_mcp.mcp_server import create_deferred_server, create_server

    async with _piapi_client(config) as (client, simulated), AsyncExitStack() as running:
        # Simulated outputs never sit beside paid ones: they go to their own sub-folder.
        output_dir = sandbox_output_dir(config.output_dir) if simulated else config.output_dir
        listing = ListingSettings.of(
            client.base_url,
            wait_seconds=config.wait_seconds,
            dedup_seconds=config.dedup_seconds,
            task_card=True,
        )

        async def settle() -> ServerSettings:
            """The ledger, the waits' helpers and the settings made of them."""
            from piapi_mcp.ledger import LEDGER_ERRORS, Ledger, TaskLedger, open_ledger
            from piapi_mcp.media import OutputSaver
            from piapi_mcp.server_settings import ServerSettings

            ledger: Ledger = (
                TaskLedger(None) if simulated else open_ledger(config.ledger_url, config.state_dir)
            )
            try:
                await ledger.start()
            except LEDGER_ERRORS as err:
                # Its sentence names the database with the password hidden, and says what to do.
                raise ConfigError(str(err)) from None
            events = await running.enter_async_context(_task_events(config, webhook, simulated))
            estimator = await running.enter_async_context(_estimator(config, simulated))
            # A sandbox's simulator lives and dies with this process, and so do its ledger and
            # durations: they never mix with the real ones, nor with another sandbox run's.
            return ServerSettings(
                wait_seconds=listing.wait_seconds,
                simulated=simulated,
                estimator=estimator,
                ledger=ledger,
                dedup_seconds=listing.dedup_seconds,
                allowed_dirs=list(config.allowed_dirs),
                # Over HTTP the caller's disk is not this machine's: only PIAPI_ALLOWED_DIRS counts.
                use_client_roots=transport == "stdio",
                outputs=OutputSaver(client.http_client, output_dir, timeout=config.http_timeout),
                preview=config.preview,
                allow_private_outputs=config.allow_private_outputs,
                # Over HTTP the caller cannot reach this machine's paths: saved files go by
                # folder-relative names.
                relative_output_paths=transport != "stdio",
                daily_budget_usd=config.daily_budget_usd,
                task_card=listing.task_card,
                webhook=webhook,
                events=events,
            )

        # A restart answers the host's first lists from the state folder; the sandbox's simulator gets
        # a new address every run, so its lists are built each time.
        listings_in = None if simulated else config.state_dir
        if transport == "stdio" and not config.ledger_url and not simulated:
            # A desktop host's start: the SQLite ledger never stops a start (a bad one is set aside),
            # so opening it and the rest waits for the first call, and the host's first lists come
            # sooner. A database, or the HTTP hosting, is set up (and its errors said) before serving.
            settings = None
            server = create_deferred_server(client, listing, settle, listings_in=listings_in)
        else:
            settings = await settle()
            server = create_server(client, settings, listings_in=listings_in)
        if config.api_key is None and not simulated:
            logger.warning(
                "PIAPI_API_KEY is not set: tools will answer with how to set it (or use --sandbox)"
            )
        if settings is None:
            ledger_location = f"{config.state_dir / LEDGER_FILE_NAME} (opened on the first call)"
        else:
            assert settings.ledger is not None
            ledger_location = settings.ledger.location or "in memory (sandbox: forgotten on exit)"
        logger.info(
            "task ledger: %s; outputs saved to: %s",
            ledger_location,
            output_dir or "nowhere (PIAPI_SAVE_OUTPUTS=0)",
        )
        if transport == "stdio":
            from piapi_mcp.stdio import serve_stdio

            await serve_stdio(server)
            return
        from piapi_mcp.hosting import HttpLimits, WebhookReceiver, build_http_app, serve_http

        limits = HttpLimits.from_env()
        assert settings is not None and settings.ledger is not None
        app = build_http_app(
            server,
            "sse" if transport == "sse" else "streamable-http",
            host=host,
            token=config.auth_token,
            allowed_hosts=config.allowed_hosts,
            allowed_origins=config.allowed_origins,
            stateless=config.stateless,
            webhooks=None
            if webhook is None
            else WebhookReceiver(webhook.secret, settings.ledger, settings.events),
        )
        path = "/sse" if transport == "sse" else "/mcp"
        _log_http_security(config, host)
        shown = f"[{host}]" if ":" in host else host

        def started(bound_port: int) -> None:
            logger.info("serving MCP over %s at http://%s:%d%s", transport, shown, bound_port, path)

        await serve_http(app, host, port, limits, on_started=started)


@asynccontextmanager
async def _estimator(config: Config, simulated: bool) -> AsyncIterator[DurationEstimator]:
    """What learns task durations: shared through ``PIAPI_LEDGER_URL``'s database when set (and kept
    in this replica's file too), else in the state folder's file; the sandbox's only in memory."""
    from piapi_mcp.waiting import DurationEstimator

    if simulated:
        # The sandbox knows how long its tasks take; PiAPI's documented example does not apply.
        yield DurationEstimator(path=None, priors=_sandbox_priors(config))
        return
    path = config.state_dir / "durations.json"
    if not config.ledger_url:
        yield DurationEstimator(path=path)
        return
    from piapi_mcp.durations_pg import SharedDurationEstimator

    async with SharedDurationEstimator(config.ledger_url, path=path).running() as shared:
        yield shared


@asynccontextmanager
async def _task_events(
    config: Config, webhook: WebhookTarget | None, simulated: bool
) -> AsyncIterator[TaskEvents]:
    """Where webhook events travel: through PostgreSQL to every replica when webhooks are on and
    ``PIAPI_LEDGER_URL`` is set (listening while the server runs), else within this process."""
    from piapi_mcp.events import LocalTaskEvents

    if webhook is None or not config.ledger_url or simulated:
        yield LocalTaskEvents()
        return
    from piapi_mcp.events_pg import PostgresTaskEvents

    async with PostgresTaskEvents(config.ledger_url).running() as events:
        yield events


def _webhook_target(config: Config, transport: str) -> WebhookTarget | None:
    """Where PiAPI pushes task ends: only over HTTP with ``PIAPI_PUBLIC_URL`` set (logged, never the secret).

    Raises:
        ConfigError: the webhook secret cannot be read or kept (see ``config.webhook_secret``).
    """
    if config.public_url is None:
        return None
    if transport == "stdio":
        logger.info("stdio transport: %s is not used (PiAPI cannot reach a stdio server)", PUBLIC_URL_ENV)
        return None
    from piapi_mcp.server_settings import WebhookTarget

    secret, generated = webhook_secret(config)
    endpoint = f"{config.public_url}{WEBHOOK_PATH}"
    logger.info(
        "PiAPI webhooks on: task ends are pushed to %s (polling continues, less often, as the fallback)",
        endpoint,
    )
    if generated:
        logger.warning(
            "webhook secret generated and kept in %s; replicas that do not share that folder must all "
            "set %s to one value",
            config.state_dir / WEBHOOK_SECRET_FILE,
            WEBHOOK_SECRET_ENV,
        )
    return WebhookTarget(endpoint, secret)


async def doctor(config: Config) -> int:
    """Check what the server needs, print one line per check; 0 when all pass, else 1.

    The key is checked with PiAPI's account info, which costs nothing.
    """
    import os
    import tempfile

    from piapi_mcp.errors import PiAPIError
    from piapi_mcp.ledger import FILE_NAME as LEDGER_FILE
    from piapi_mcp.ledger import TaskLedger

    checks: list[tuple[bool, str]] = []
    if config.api_key is None:
        checks.append((False, "key: PIAPI_API_KEY is not set (get one at https://piapi.ai/workspace/key)"))
    else:
        async with _piapi_client(config) as (client, _):
            try:
                account = await client.account_info()
            except PiAPIError as err:
                checks.append(
                    (False, f"key: {config.base_url} refused it or could not answer: {err.message}")
                )
            else:
                checks.append(
                    (True, f"key: accepted by {config.base_url} (plan {account.plan or 'unknown'})")
                )
    if not config.allowed_dirs:
        checks.append(
            (True, "image folders: none set (PIAPI_ALLOWED_DIRS); only a host's roots are readable")
        )
    for folder in config.allowed_dirs:
        if not folder.is_dir():
            checks.append((False, f"image folder: {folder} does not exist or is not a folder"))
        elif not os.access(folder, os.R_OK | os.X_OK):
            checks.append((False, f"image folder: {folder} is not readable"))
        else:
            checks.append((True, f"image folder: {folder} is readable"))
    if config.ledger_url:
        from piapi_mcp.ledger import LEDGER_ERRORS
        from piapi_mcp.ledger_pg import PostgresLedger

        database = PostgresLedger(config.ledger_url, state_dir=config.state_dir)
        try:
            await database.start()
        except LEDGER_ERRORS as err:
            checks.append((False, f"state: {err}"))
        else:
            checks.append((True, f"state: the task ledger's database answers ({database.shown_url})"))
        finally:
            await database.aclose()
    elif (ledger := TaskLedger.open(config.state_dir / LEDGER_FILE)).notice:
        checks.append((False, f"state: {ledger.notice}"))
    else:
        checks.append((True, f"state: the task ledger opens ({config.state_dir / LEDGER_FILE})"))
    if config.output_dir is None:
        checks.append((True, "outputs: saving is off (PIAPI_SAVE_OUTPUTS=0)"))
    else:
        try:
            config.output_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=config.output_dir):
                pass
        except OSError as err:
            checks.append((False, f"outputs: cannot write in {config.output_dir} ({err.strerror or err})"))
        else:
            checks.append((True, f"outputs: {config.output_dir} is writable"))
    for passed, line in checks:
        print(f"{'ok  ' if passed else 'FAIL'}  {line}", flush=True)
    return 0 if all(passed for passed, _ in checks) else 1


def sandbox_output_dir(output_dir: Path | None) -> Path | None:
    """Where the sandbox saves its simulated outputs: a ``sandbox`` folder inside the output folder."""
    return None if output_dir is None else output_dir / "sandbox"


def _log_http_security(config: Config, host: str) -> None:
    """Say at start whether requests need a token (never the token itself) and which names are accepted."""
    from piapi_mcp.hosting import RECOMMENDED_TOKEN_LENGTH, is_loopback, transport_security

    if config.auth_token:
        logger.info("HTTP auth: on, every request needs 'Authorization: Bearer <token>'")
        if len(config.auth_token) < RECOMMENDED_TOKEN_LENGTH:
            logger.warning(
                "the auth token is short (%d characters); a random one of %d+ is safer, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
                len(config.auth_token),
                RECOMMENDED_TOKEN_LENGTH,
            )
    elif is_loopback(host):
        logger.info("HTTP auth: off (%s not set); only this machine can connect", AUTH_TOKEN_ENV)
    else:
        logger.warning(
            "HTTP auth: OFF on %s (--insecure-no-auth): anyone who reaches this port can use your PiAPI key",
            host,
        )
    security = transport_security(host, config.allowed_hosts, config.allowed_origins)
    logger.info(
        "DNS-rebinding checks: Host must match %s; Origin, when sent, %s (add names with --allowed-host)",
        ", ".join(security.allowed_hosts),
        ", ".join(security.allowed_origins),
    )


def _sandbox_queue_seconds(config: Config) -> float:
    """Seconds a sandbox task stays pending before it runs."""
    return min(1.0, config.sandbox_duration)


def _sandbox_scale(config: Config) -> float:
    """How much shorter than on PiAPI sandbox tasks run: a Kontext edit takes ``sandbox_duration``.

    Every catalog entry keeps its proportion (a video takes a few times an edit's length).
    """
    from piapi_mcp.catalog.flux import KONTEXT

    return config.sandbox_duration / KONTEXT.typical_seconds


def _sandbox_priors(config: Config) -> dict[tuple[str | None, str | None], float]:
    """Each catalog entry's sandbox task length (queued + running), the first ETA of its tasks."""
    from piapi_mcp.catalog import CATALOG

    queue, scale = _sandbox_queue_seconds(config), _sandbox_scale(config)
    return {spec.key: queue + max(0.1, spec.typical_seconds * scale) for spec in CATALOG.all()}


@asynccontextmanager
async def _piapi_client(config: Config) -> AsyncIterator[tuple[PiAPIClient, bool]]:
    """The PiAPI client for ``config``: the real API, or a simulator started in this process."""
    async with default_http_client() as http:
        if not config.sandbox:
            yield (
                PiAPIClient(
                    http,
                    api_key=config.api_key,
                    base_url=config.base_url,
                    upload_url=config.upload_url,
                    timeout=config.http_timeout,
                ),
                False,
            )
            return
        from piapi_mcp.simulator import PiAPISimulator, SimulatorControls

        simulator = PiAPISimulator(
            controls=SimulatorControls(
                duration=config.sandbox_duration,
                queue_seconds=_sandbox_queue_seconds(config),
                duration_scale=_sandbox_scale(config),
            )
        )
        async with serve_app_on_loopback(simulator.app) as base_url:
            logger.info("sandbox: PiAPI simulator at %s (results are simulated, no credits used)", base_url)
            yield (
                PiAPIClient(
                    http,
                    api_key=SANDBOX_API_KEY,
                    base_url=base_url,
                    upload_url=upload_url_for(base_url),
                    timeout=config.http_timeout,
                ),
                True,
            )


async def _run_simulator(args: argparse.Namespace) -> None:
    from contextlib import AsyncExitStack

    import httpx2

    from piapi_mcp.simulator import PiAPISimulator, SimulatorControls, httpx_poster

    if not 0 <= args.fault_rate <= 1:
        raise SystemExit("--fault-rate must be between 0 and 1.")
    simulator = PiAPISimulator(
        controls=SimulatorControls(
            duration=args.duration,
            queue_seconds=args.queue_seconds,
            fault_rate=args.fault_rate,
            fault_seed=args.fault_seed,
            webhook_delay=args.webhook_delay,
        )
    )
    async with AsyncExitStack() as stack:
        if args.webhooks:
            # Webhooks go wherever each create asked (a real server's public URL), so no proxy, short waits.
            poster = await stack.enter_async_context(httpx2.AsyncClient(trust_env=False, timeout=10.0))
            await stack.enter_async_context(simulator.sending_webhooks(httpx_poster(poster)))
        url = await stack.enter_async_context(serve_app_on_loopback(simulator.app, args.port))
        print(f"PiAPI simulator listening on {url} (any X-API-Key is accepted)", file=sys.stderr, flush=True)
        await anyio.sleep_forever()
