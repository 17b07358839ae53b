"""A throw-away PostgreSQL cluster for the tests, from the installed binaries, and the ledger factories.

The cluster lives in a temporary folder, listens on a free loopback port (and a unix socket in that
folder), runs without fsync (commits still reach the WAL), and is removed at the end of the session. As root, its programs run as
the ``postgres`` user (``initdb`` refuses root). Where PostgreSQL is not installed the PostgreSQL
tests are skipped with a clear message, except under ``CI``, where they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from piapi_mcp.ledger import Ledger, TaskLedger
from piapi_mcp.timing import Clock

#: Where Debian's ``postgresql`` package puts the binaries (15 first, as ``.ci/run`` installs).
BIN_DIRS = ("/usr/lib/postgresql/15/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
#: The password every test URL carries (the cluster trusts loopback, so any would do): it must never show.
PASSWORD = "pw-Sup3r-S3cret-7f1c"


def find_bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``, or ``None`` when PostgreSQL is not installed."""
    for folder in BIN_DIRS:
        if Path(folder, "initdb").is_file() and Path(folder, "pg_ctl").is_file():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def unavailable(reason: str) -> None:
    """Skip the test (fail it under ``CI``: CI installs PostgreSQL, so its absence is a defect)."""
    message = f"{reason}; the PostgreSQL ledger tests need it (Debian: apt-get install postgresql)."
    if os.environ.get("CI"):
        pytest.fail(f"{message} CI is set, so this fails instead of skipping.")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One cluster: :meth:`start`, :meth:`stop` (``immediate`` for an outage), and a database per test."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="piapi-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        program = [str(self.bin_dir / command[0]), *command[1:]]
        if self.as_root:
            program = ["runuser", "-u", "postgres", "--", *program]
        return subprocess.run(program, capture_output=True, text=True, timeout=60, check=False)

    def init(self) -> None:
        """Create the cluster (superuser ``postgres``, trusted loopback)."""
        done = self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            # No fsync (the OS keeps what a stopped server wrote), but commits reach the WAL before
            # they return, so an immediate stop (the outage test) loses no committed row.
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
            "-c full_page_writes=off -c max_connections=400"
        )
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()} {log[-2000:]}")

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """Stop the server (``immediate``: as a crash would, without a checkpoint)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        """A URL for ``database`` over loopback TCP, with a password (which trust ignores)."""
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database's URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@dataclass
class LedgerFactory:
    """Makes the ledgers of one test on one backend: SQLite files, or the test's own database."""

    kind: Literal["sqlite", "postgres"]
    state_dir: Path
    url: str | None = None
    made: list[Any] = field(default_factory=list)

    def make(self, clock: Clock | None = None, path: Path | None = None, **options: Any) -> Ledger:
        """A new ledger object over the test's one store (the file at ``path``; for PostgreSQL, its database).

        For SQLite ``path=None`` is an in-memory ledger; PostgreSQL ledgers share the test's database
        whatever ``path`` says, and keep their fallback file in the test's state folder.
        """
        if self.kind == "sqlite":
            return TaskLedger(path, clock=clock, **options)
        from piapi_mcp.ledger_pg import PostgresLedger

        assert self.url is not None
        ledger = PostgresLedger(self.url, clock, state_dir=self.state_dir, **options)
        self.made.append(ledger)
        return ledger

    async def close(self) -> None:
        """Close every PostgreSQL ledger made (their pools)."""
        for ledger in self.made:
            await ledger.aclose()
