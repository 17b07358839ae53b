"""Settings: what the environment and the command line say, checked once, in one place.

Everything that reads ``PIAPI_*`` variables lives here, so the CLI, the server and HTTP hosting
share one definition of each setting and none imports another to learn a default.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from piapi_mcp.client import (
    DEFAULT_BASE_URL,
    DEFAULT_HTTP_TIMEOUT,
    DEFAULT_UPLOAD_URL,
    UPLOAD_PATH,
    upload_url_for,
)

#: Default for a call's ``wait_seconds``: below the ~60 s at which hosts cut a tool call.
DEFAULT_WAIT_SECONDS: Final = 45.0
#: An identical create within this many seconds returns the task already created.
DEFAULT_DEDUP_SECONDS: Final = 120.0
#: The SQLite task ledger's file, in the state folder.
LEDGER_FILE_NAME: Final = "tasks.sqlite3"
MAX_WAIT_SECONDS: Final = 900.0
DEFAULT_SANDBOX_DURATION: Final = 8.0

AUTH_TOKEN_ENV: Final = "PIAPI_MCP_AUTH_TOKEN"
DAILY_BUDGET_ENV: Final = "PIAPI_DAILY_BUDGET_USD"
#: The largest daily budget taken (a typo's extra zeros are caught, any real budget fits).
MAX_DAILY_BUDGET_USD: Final = 1_000_000.0
ALLOWED_HOSTS_ENV: Final = "PIAPI_MCP_ALLOWED_HOSTS"
ALLOWED_ORIGINS_ENV: Final = "PIAPI_MCP_ALLOWED_ORIGINS"
HEADER_TIMEOUT_ENV: Final = "PIAPI_MCP_HEADER_TIMEOUT"
MAX_CONNECTIONS_ENV: Final = "PIAPI_MCP_MAX_CONNECTIONS"
STATELESS_ENV: Final = "PIAPI_MCP_STATELESS"
PUBLIC_URL_ENV: Final = "PIAPI_PUBLIC_URL"
WEBHOOK_SECRET_ENV: Final = "PIAPI_WEBHOOK_SECRET"
#: Where PiAPI posts task webhooks, under ``PIAPI_PUBLIC_URL`` (served by ``hosting.WebhookReceiver``).
WEBHOOK_PATH: Final = "/webhooks/piapi"
#: The file in the state folder holding the generated webhook secret (when none is set).
WEBHOOK_SECRET_FILE: Final = "webhook-secret"
#: A webhook secret shorter than this is refused: it is all that guards the route.
MIN_WEBHOOK_SECRET_LENGTH: Final = 16


#: A ``postgresql://`` URL: the task ledger is that database (shared by replicas), not SQLite.
LEDGER_URL_ENV: Final = "PIAPI_LEDGER_URL"

LOG_LEVEL_ENV: Final = "PIAPI_LOG_LEVEL"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_LOG_LEVEL: Final = "INFO"

#: Every environment variable the server reads, with one line on what it does: ``--help`` lists them
#: in this order (the key first).
SETTINGS: Final[tuple[tuple[str, str], ...]] = (
    ("PIAPI_API_KEY", "your PiAPI key (https://piapi.ai/workspace/key); without it, only --sandbox works"),
    ("PIAPI_ALLOWED_DIRS", f"folders local images may be read from, separated by '{os.pathsep}'"),
    ("PIAPI_OUTPUT_DIR", "where finished outputs are saved (default ~/Pictures/piapi-mcp)"),
    ("PIAPI_SAVE_OUTPUTS", "0 to not save outputs (default 1)"),
    ("PIAPI_PREVIEW", "0 to not attach preview thumbnails to results (default 1)"),
    ("PIAPI_WAIT_SECONDS", f"how long a tool call waits for its task (default {DEFAULT_WAIT_SECONDS:g})"),
    (DAILY_BUDGET_ENV, "most US$ this server's tasks may cost in any 24 h (default: no limit)"),
    (
        LOG_LEVEL_ENV,
        f"{', '.join(LOG_LEVELS).lower()} (default {DEFAULT_LOG_LEVEL.lower()}); --log-level wins",
    ),
    ("PIAPI_STATE_DIR", "where the task ledger and learnt durations are kept (default: a per-user folder)"),
    (
        LEDGER_URL_ENV,
        "postgresql://user:password@host/db to keep the task ledger in PostgreSQL, shared by replicas "
        "(default: SQLite in PIAPI_STATE_DIR)",
    ),
    ("PIAPI_BASE_URL", f"PiAPI's address (default {DEFAULT_BASE_URL})"),
    (
        "PIAPI_UPLOAD_URL",
        f"where local images are uploaded (default {DEFAULT_UPLOAD_URL}; PIAPI_BASE_URL's {UPLOAD_PATH} "
        "when that is set)",
    ),
    ("PIAPI_HTTP_TIMEOUT", f"seconds per PiAPI request (default {DEFAULT_HTTP_TIMEOUT:g})"),
    (
        "PIAPI_DEDUP_SECONDS",
        f"an identical request within this many seconds reuses its task (default {DEFAULT_DEDUP_SECONDS:g})",
    ),
    ("PIAPI_SANDBOX_DURATION", f"seconds a sandbox edit takes (default {DEFAULT_SANDBOX_DURATION:g})"),
    ("PIAPI_ALLOW_PRIVATE_OUTPUTS", "1 to let output downloads reach private addresses (default 0)"),
    (AUTH_TOKEN_ENV, "HTTP transports: the bearer token every request must carry"),
    (ALLOWED_HOSTS_ENV, "HTTP transports: extra Host names accepted, comma-separated"),
    (ALLOWED_ORIGINS_ENV, "HTTP transports: extra browser Origins accepted, comma-separated"),
    (HEADER_TIMEOUT_ENV, "HTTP transports: seconds a request's headers may take"),
    (MAX_CONNECTIONS_ENV, "HTTP transports: most connections open at once"),
    (
        STATELESS_ENV,
        "streamable-http: 1 for no sessions, so any replica answers any request (--stateless)",
    ),
    (
        PUBLIC_URL_ENV,
        f"HTTP transports: this server's public URL; PiAPI then pushes task ends to it{WEBHOOK_PATH}",
    ),
    (
        WEBHOOK_SECRET_ENV,
        f"HTTP transports: the secret PiAPI's webhooks carry, at least {MIN_WEBHOOK_SECRET_LENGTH} "
        "characters (default: one kept in the state folder; replicas must share one)",
    ),
)


def settings_help() -> str:
    """The ``--help`` epilog: every environment variable of :data:`SETTINGS`, one per line."""
    width = max(len(name) for name, _ in SETTINGS)
    lines = [f"  {name:<{width}}  {text}" for name, text in SETTINGS]
    return "environment variables:\n" + "\n".join(lines)


def log_level(flag: str | None, env: Mapping[str, str] = os.environ) -> str:
    """The log level: ``--log-level``, else ``PIAPI_LOG_LEVEL``, else INFO, in any letter case.

    Raises:
        ConfigError: a level that is not one of :data:`LOG_LEVELS`.
    """
    source = "--log-level" if flag is not None else LOG_LEVEL_ENV
    raw = (flag if flag is not None else env.get(LOG_LEVEL_ENV, "")).strip()
    if not raw:
        return DEFAULT_LOG_LEVEL
    if raw.upper() not in LOG_LEVELS:
        raise ConfigError(f"{source} {raw!r} is not a log level; use one of {', '.join(LOG_LEVELS).lower()}.")
    return raw.upper()


class ConfigError(Exception):
    """A setting has a value we cannot use; the message says which and why."""


@dataclass(frozen=True)
class Config:
    """Settings read from the environment, then overridden by flags."""

    api_key: str | None
    base_url: str
    wait_seconds: float
    http_timeout: float
    sandbox: bool
    sandbox_duration: float
    state_dir: Path
    dedup_seconds: float
    #: HTTP transports only: every request must carry ``Authorization: Bearer <auth_token>``.
    auth_token: str | None = None
    #: HTTP transports only: allow a non-loopback bind address without a token.
    insecure_no_auth: bool = False
    #: Extra Host-header names (and Origins) the HTTP transports accept, besides loopback.
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    #: Folders local images may be read from (``PIAPI_ALLOWED_DIRS``), besides a stdio client's roots.
    allowed_dirs: tuple[Path, ...] = ()
    upload_url: str = DEFAULT_UPLOAD_URL
    #: Where finished outputs are saved; ``None`` when ``PIAPI_SAVE_OUTPUTS=0``.
    output_dir: Path | None = None
    preview: bool = True
    #: ``PIAPI_ALLOW_PRIVATE_OUTPUTS=1``: output downloads may reach private and link-local addresses.
    allow_private_outputs: bool = False
    #: ``PIAPI_DAILY_BUDGET_USD``: most US$ this server's tasks may cost in any 24 h; ``None``: no limit.
    daily_budget_usd: float | None = None
    #: ``PIAPI_LEDGER_URL``: the PostgreSQL ledger's URL (it may hold a password: never shown as is).
    ledger_url: str | None = field(default=None, repr=False)
    #: Streamable HTTP without sessions (``--stateless`` or ``PIAPI_MCP_STATELESS=1``).
    stateless: bool = False
    #: ``PIAPI_PUBLIC_URL`` (no trailing ``/``): HTTP creates ask PiAPI for webhooks there.
    public_url: str | None = None
    #: ``PIAPI_WEBHOOK_SECRET``; ``None``: see :func:`webhook_secret`.
    webhook_secret: str | None = field(default=None, repr=False)

    @classmethod
    def load(cls, args: argparse.Namespace, env: dict[str, str] | os._Environ[str] = os.environ) -> Config:
        """Read ``PIAPI_*`` variables and apply command-line flags over them.

        Raises:
            ConfigError: a number that is not a number, or out of range.
        """

        def number(name: str, flag: float | None, default: float, low: float, high: float) -> float:
            # A flag replaces the variable, and is held to the same range.
            given = env if flag is None else {name: repr(flag)}
            return env_number(given, name, default, low, high, "seconds")

        def switch(name: str, default: bool = True) -> bool:
            raw = env.get(name, "").strip().lower()
            if not raw:
                return default
            if raw in ("1", "true", "yes", "on"):
                return True
            if raw in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{name}={raw!r} should be 1 or 0.")

        def names(name: str, flag: list[str] | None) -> tuple[str, ...]:
            # Flags replace the variable, like every other setting.
            return split_names(",".join(flag)) if flag else split_names(env.get(name))

        flag_token = getattr(args, "auth_token", None)
        token = (flag_token if flag_token is not None else env.get(AUTH_TOKEN_ENV, "")).strip()

        base_url = (getattr(args, "base_url", None) or env.get("PIAPI_BASE_URL") or DEFAULT_BASE_URL).strip()
        return cls(
            api_key=(env.get("PIAPI_API_KEY") or "").strip() or None,
            base_url=base_url,
            wait_seconds=number(
                "PIAPI_WAIT_SECONDS",
                getattr(args, "wait_seconds", None),
                DEFAULT_WAIT_SECONDS,
                0,
                MAX_WAIT_SECONDS,
            ),
            http_timeout=number(
                "PIAPI_HTTP_TIMEOUT", getattr(args, "http_timeout", None), DEFAULT_HTTP_TIMEOUT, 1, 600
            ),
            sandbox=bool(getattr(args, "sandbox", False)),
            sandbox_duration=number("PIAPI_SANDBOX_DURATION", None, DEFAULT_SANDBOX_DURATION, 0, 600),
            state_dir=default_state_dir(env),
            dedup_seconds=number("PIAPI_DEDUP_SECONDS", None, DEFAULT_DEDUP_SECONDS, 0, 86_400),
            auth_token=token or None,
            insecure_no_auth=bool(getattr(args, "insecure_no_auth", False)),
            allowed_hosts=names(ALLOWED_HOSTS_ENV, getattr(args, "allowed_host", None)),
            allowed_origins=names(ALLOWED_ORIGINS_ENV, getattr(args, "allowed_origin", None)),
            allowed_dirs=tuple(parse_allowed_dirs(env.get("PIAPI_ALLOWED_DIRS", ""))),
            upload_url=(env.get("PIAPI_UPLOAD_URL") or "").strip() or upload_url_for(base_url),
            output_dir=(
                Path(env["PIAPI_OUTPUT_DIR"]).expanduser()
                if env.get("PIAPI_OUTPUT_DIR", "").strip()
                else default_output_dir()
            )
            if switch("PIAPI_SAVE_OUTPUTS")
            else None,
            preview=switch("PIAPI_PREVIEW"),
            allow_private_outputs=switch("PIAPI_ALLOW_PRIVATE_OUTPUTS", default=False),
            daily_budget_usd=daily_budget(env.get(DAILY_BUDGET_ENV)),
            ledger_url=ledger_url(env.get(LEDGER_URL_ENV)),
            stateless=bool(getattr(args, "stateless", False)) or switch(STATELESS_ENV, default=False),
            public_url=public_url(env.get(PUBLIC_URL_ENV)),
            webhook_secret=checked_secret(env.get(WEBHOOK_SECRET_ENV, "").strip()) or None,
        )


def public_url(raw: str | None) -> str | None:
    """``PIAPI_PUBLIC_URL`` without its trailing ``/`` (``None`` when unset or empty).

    Raises:
        ConfigError: not an http(s) URL with a host, or one with a query or fragment.
    """
    from urllib.parse import urlsplit

    text = (raw or "").strip().rstrip("/")
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"{PUBLIC_URL_ENV}={text!r} is not this server's public address; give its https URL as "
            f"PiAPI can reach it (e.g. https://mcp.example.com), without a query; webhooks go to "
            f"that address + {WEBHOOK_PATH}."
        )
    return text


def checked_secret(secret: str) -> str:
    """``secret`` if PiAPI can echo it in a header and it is long enough (``""`` passes: unset).

    Raises:
        ConfigError: too short, or holding a space, control or non-ASCII character.
    """
    if secret and (len(secret) < MIN_WEBHOOK_SECRET_LENGTH or not all("!" <= char <= "~" for char in secret)):
        raise ConfigError(
            f"{WEBHOOK_SECRET_ENV} must be at least {MIN_WEBHOOK_SECRET_LENGTH} printable ASCII characters "
            "without spaces (PiAPI sends it back in a header); generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`."
        )
    return secret


def webhook_secret(config: Config) -> tuple[str, bool]:
    """The secret of PiAPI's webhooks, and whether it was generated (not set in the environment).

    ``PIAPI_WEBHOOK_SECRET`` when set; otherwise a random one kept in the state folder (made once,
    readable by its owner only), so restarts keep it and tasks created before a restart still
    reach the route. Replicas with their own state folders must set the variable to one shared value.

    Raises:
        ConfigError: the state folder cannot hold the file, or its content is not a usable secret.
    """
    if config.webhook_secret:
        return config.webhook_secret, False
    path = config.state_dir / WEBHOOK_SECRET_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            stored = path.read_text(encoding="ascii").strip()
        else:
            stored = secrets.token_urlsafe(32)
            with os.fdopen(descriptor, "w", encoding="ascii") as out:
                out.write(stored + "\n")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"Cannot keep the webhook secret in {path} ({type(err).__name__}); set {WEBHOOK_SECRET_ENV} "
            "or fix PIAPI_STATE_DIR."
        ) from None
    unusable = ConfigError(
        f"{path} does not hold a usable webhook secret; delete it (a new one is made) or set "
        f"{WEBHOOK_SECRET_ENV}."
    )
    if not stored:
        raise unusable
    try:
        return checked_secret(stored), True
    except ConfigError:
        raise unusable from None


def env_number(
    env: Mapping[str, str], name: str, default: float, low: float, high: float, unit: str
) -> float:
    """The number in variable ``name`` (``default`` when unset or empty), between ``low`` and ``high``.

    Raises:
        ConfigError: not a number, or out of range; the sentence names the variable and the ``unit``.
    """
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of {unit}.") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g} {unit} (got {value:g}).")
    return value


def daily_budget(raw: str | None) -> float | None:
    """``PIAPI_DAILY_BUDGET_USD`` as US dollars (``None`` when unset or empty).

    Raises:
        ConfigError: not a number, or not between 0 and :data:`MAX_DAILY_BUDGET_USD`.
    """
    text = (raw or "").strip().removeprefix("$").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"{DAILY_BUDGET_ENV}={raw!r} is not an amount in US dollars (e.g. 5 or 2.50)."
        ) from None
    if not 0 <= value <= MAX_DAILY_BUDGET_USD:
        raise ConfigError(
            f"{DAILY_BUDGET_ENV} must be between 0 and {MAX_DAILY_BUDGET_USD:,.0f} US dollars (got {text})."
        )
    return value


def ledger_url(raw: str | None) -> str | None:
    """``PIAPI_LEDGER_URL`` (``None`` when unset or empty).

    Raises:
        ConfigError: not a ``postgresql://`` URL (the sentence never repeats the value: it may hold
            a password).
    """
    text = (raw or "").strip()
    if not text:
        return None
    if not text.lower().startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"{LEDGER_URL_ENV} must be a postgresql:// URL (e.g. postgresql://piapi:secret@db/piapi), "
            "or unset for the SQLite ledger."
        )
    return text


def default_output_dir() -> Path:
    """Where outputs are saved by default: ``~/Pictures/piapi-mcp``."""
    return Path.home() / "Pictures" / "piapi-mcp"


def parse_allowed_dirs(value: str) -> list[Path]:
    """``PIAPI_ALLOWED_DIRS``: folders separated by the platform's path separator (``:`` or ``;``)."""
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]


def default_state_dir(env: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """Where the server keeps what it learns between runs: ``PIAPI_STATE_DIR``, else a per-user folder."""
    if explicit := env.get("PIAPI_STATE_DIR", "").strip():
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "piapi-mcp"


def split_names(raw: str | None) -> tuple[str, ...]:
    """The entries of a comma-separated setting, trimmed, empties dropped."""
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())
