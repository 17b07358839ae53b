"""Load with faults: N concurrent kontext_edit calls over Streamable HTTP while PiAPI misbehaves.

    python benchmarks/load.py                       # 200 calls, 10 % faulty PiAPI answers
    python benchmarks/load.py --calls 500 --fault-rate 0.2 --sessions 10
    python benchmarks/load.py --quick               # 40 calls, 2 s tasks: a smoke run

Everything runs on 127.0.0.1, each part in its own process: the PiAPI simulator
(``python -m piapi_mcp simulator``, real clock) told over ``POST /_simulator/controls`` to answer a
share of requests with a random fault (429, 500, 502 page, 503, non-JSON 200, connection dropped
mid-answer; seeded), the MCP server (``python -m piapi_mcp --transport streamable-http``, fresh
state dir), and this script's clients, a handful of MCP sessions sharing the calls. Every call
has its own prompt, so the duplicate guard never merges two of them.

Then, from the simulator's own list of tasks (``GET /_simulator/tasks``), it reports:

- completed / unfinished / errored calls, with the distinct error sentences;
- lost: tasks whose id PiAPI did send, but which reached no caller (neither a result, an error nor
  a progress message) or not the server's ledger. Must be 0;
- answer lost: tasks PiAPI created but whose create answer the fault swallowed. No one can know
  their id; each such call must have said the task may exist ("unwarned" must be 0);
- duplicated: simulator tasks beyond the first for one call. Must be 0;
- the server's peak RSS (VmHWM) and the wall time.

Exits 1 when lost, unwarned, duplicated or failed calls (exceptions instead of results) are not 0.
Child processes are stopped on exit; every wait is bounded.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
import httpx2
from _processes import HOST, START_TIMEOUT, Children, free_port, read_status_kib, wait_for_port
from mcp import Client
from mcp.types import CallToolResult, TextContent

#: Long and distinctive: the report checks that it appears in no result and no server log.
API_KEY: Final = "pk-load-benchmark-5e7a9c1b3d5f7a9c1e3b5d7f9a1c3e5b"
IMAGE: Final = "https://example.com/load-input.png"
MAY_HAVE_CREATED: Final = "may have created the task"
#: Beyond its wait budget, how long one call may take before it counts as hung.
CALL_SLACK: Final = 60.0


@dataclass(frozen=True)
class Settings:
    calls: int
    sessions: int
    fault_rate: float
    seed: int
    duration: float
    wait_seconds: float


@dataclass
class CallOutcome:
    index: int
    prompt: str
    seconds: float
    is_error: bool = False
    status: str | None = None
    task_id: str | None = None
    text: str = ""
    dump: str = ""
    progress: list[str] = field(default_factory=list)
    #: When each progress message and then the result arrived (perf_counter), for the gaps a host sees.
    arrivals: list[float] = field(default_factory=list)
    exception: str | None = None

    @property
    def longest_silence(self) -> float | None:
        """The longest time between the first progress message and the result with nothing arriving."""
        gaps = [later - earlier for earlier, later in itertools.pairwise(self.arrivals)]
        return max(gaps) if gaps else None


@dataclass
class Report:
    calls: int
    sessions: int
    fault_rate: float
    seed: int
    task_seconds: float
    wait_seconds: float
    wall_seconds: float
    completed: int
    unfinished: int
    errored: int
    failed_calls: int
    simulator_tasks: int
    lost: int
    answer_lost: int
    answer_lost_unwarned: int
    duplicated: int
    missing_from_ledger: int
    key_leaks: int
    faults_injected: dict[str, int]
    call_p50_seconds: float | None
    call_max_seconds: float | None
    silence_max_seconds: float | None
    silence_p99_seconds: float | None
    rss_idle_kib: int | None
    rss_peak_kib: int | None
    errors: dict[str, int]
    exceptions: list[str]

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.answer_lost_unwarned
            or self.duplicated
            or self.failed_calls
            or self.missing_from_ledger
            or self.key_leaks
        )


# --- child processes -------------------------------------------------------------------------------


def base_env(home: Path) -> dict[str, str]:
    """This environment without PIAPI_* variables, with HOME in the run's folder (nothing lands in ~)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIAPI_")}
    env["HOME"] = str(home)
    return env


# --- the run ---------------------------------------------------------------------------------------


async def one_call(client: Client, index: int, settings: Settings, out: list[CallOutcome], t0: float) -> None:
    prompt = f"load edit #{index} {uuid.uuid4().hex[:8]}"
    outcome = CallOutcome(index=index, prompt=prompt, seconds=0.0)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        outcome.progress.append(message or "")
        outcome.arrivals.append(time.perf_counter())

    start = time.perf_counter()
    try:
        with anyio.fail_after(settings.wait_seconds + CALL_SLACK):
            result = await client.call_tool(
                "kontext_edit",
                {"prompt": prompt, "image": IMAGE, "wait_seconds": settings.wait_seconds},
                progress_callback=on_progress,
            )
        outcome.arrivals.append(time.perf_counter())
        record_result(outcome, result)
    except Exception as err:
        outcome.exception = f"{type(err).__name__}: {err}"[:300]
    outcome.seconds = time.perf_counter() - start
    out.append(outcome)


def record_result(outcome: CallOutcome, result: CallToolResult) -> None:
    data: dict[str, Any] = result.structured_content or {}
    outcome.is_error = bool(result.is_error)
    outcome.status = str(data["status"]) if "status" in data else None
    outcome.task_id = str(data["task_id"]) if data.get("task_id") else None
    outcome.text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
    outcome.dump = result.model_dump_json()


async def run(settings: Settings, work: Path) -> Report:
    children = Children(work)
    env = base_env(work / "home")
    try:
        sim_port, mcp_port = free_port(), free_port()
        simulator = children.start(
            "simulator",
            [
                sys.executable,
                "-m",
                "piapi_mcp",
                "simulator",
                "--port",
                str(sim_port),
                "--duration",
                f"{settings.duration:g}",
                "--queue-seconds",
                "0",
            ],
            env,
        )
        await wait_for_port(sim_port, simulator)
        sim_url = f"http://{HOST}:{sim_port}"
        state_dir = work / "state"
        server = children.start(
            "server",
            [
                sys.executable,
                "-m",
                "piapi_mcp",
                "--transport",
                "streamable-http",
                "--host",
                HOST,
                "--port",
                str(mcp_port),
            ],
            env
            | {
                "PIAPI_API_KEY": API_KEY,
                "PIAPI_BASE_URL": sim_url,
                "PIAPI_STATE_DIR": str(state_dir),
                "PIAPI_OUTPUT_DIR": str(work / "outputs"),
            },
        )
        await wait_for_port(mcp_port, server)
        rss_idle = read_status_kib(server.pid, "VmRSS")

        async with httpx2.AsyncClient(base_url=sim_url, timeout=10.0, trust_env=False) as sim:
            response = await sim.post(
                "/_simulator/controls", json={"fault_rate": settings.fault_rate, "fault_seed": settings.seed}
            )
            response.raise_for_status()

            outcomes: list[CallOutcome] = []
            with anyio.fail_after(START_TIMEOUT + settings.wait_seconds + 2 * CALL_SLACK):
                async with AsyncExitStack() as stack:
                    clients = [
                        await stack.enter_async_context(
                            Client(
                                f"http://{HOST}:{mcp_port}/mcp",
                                read_timeout_seconds=settings.wait_seconds + CALL_SLACK,
                            )
                        )
                        for _ in range(settings.sessions)
                    ]
                    t0 = time.perf_counter()
                    async with anyio.create_task_group() as group:
                        for index in range(settings.calls):
                            group.start_soon(
                                one_call, clients[index % len(clients)], index, settings, outcomes, t0
                            )
                    wall = time.perf_counter() - t0
            rss_peak = read_status_kib(server.pid, "VmHWM")
            seen = (await sim.get("/_simulator/tasks")).json()
        children.stop_all()  # the server's ledger is complete and closed once it has stopped
        ledger_ids = read_ledger(state_dir / "tasks.sqlite3")
        server_log = (work / "server.log").read_bytes()
        return analyse(settings, outcomes, seen, ledger_ids, server_log, wall, rss_idle, rss_peak)
    finally:
        children.stop_all()


def read_ledger(path: Path) -> set[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT task_id FROM tasks")}
    finally:
        db.close()


_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def sentence(outcome: CallOutcome) -> str:
    """The error without the SDK's prefix, task ids and numbers, so alike errors count together."""
    text = re.sub(
        r"^Error executing tool \w+: ", "", outcome.text.strip().splitlines()[0] if outcome.text else ""
    )
    return re.sub(r"\d+(\.\d+)?", "N", _IDS.sub("<id>", text))


def analyse(
    settings: Settings,
    outcomes: list[CallOutcome],
    seen: dict[str, Any],
    ledger_ids: set[str],
    server_log: bytes,
    wall: float,
    rss_idle: int | None,
    rss_peak: int | None,
) -> Report:
    by_prompt = {outcome.prompt: outcome for outcome in outcomes}
    tasks: list[dict[str, Any]] = seen["tasks"]
    per_prompt = Counter(str(task["prompt"]) for task in tasks)
    lost = answer_lost = unwarned = missing = 0
    for task in tasks:
        outcome = by_prompt.get(str(task["prompt"]))
        if task["answer_lost"]:
            answer_lost += 1
            if outcome is None or not (outcome.is_error and MAY_HAVE_CREATED in outcome.text):
                unwarned += 1
            continue
        reached = outcome is not None and (
            task["task_id"] in outcome.dump or any(task["task_id"] in m for m in outcome.progress)
        )
        lost += not reached
        missing += task["task_id"] not in ledger_ids
    finished = [o for o in outcomes if o.exception is None]
    leaks = sum(API_KEY in o.dump or any(API_KEY in m for m in o.progress) for o in finished)
    leaks += API_KEY.encode() in server_log
    seconds = [o.seconds for o in finished]
    silences = sorted(s for o in finished if (s := o.longest_silence) is not None)
    return Report(
        calls=settings.calls,
        sessions=settings.sessions,
        fault_rate=settings.fault_rate,
        seed=settings.seed,
        task_seconds=settings.duration,
        wait_seconds=settings.wait_seconds,
        wall_seconds=round(wall, 3),
        completed=sum(not o.is_error and o.status == "completed" for o in finished),
        unfinished=sum(not o.is_error and o.status != "completed" for o in finished),
        errored=sum(o.is_error for o in finished),
        failed_calls=len(outcomes) - len(finished) + (settings.calls - len(outcomes)),
        simulator_tasks=len(tasks),
        lost=lost,
        answer_lost=answer_lost,
        answer_lost_unwarned=unwarned,
        duplicated=sum(count - 1 for count in per_prompt.values() if count > 1),
        missing_from_ledger=missing,
        key_leaks=leaks,
        faults_injected=dict(sorted(seen.get("random_faults", {}).items())),
        call_p50_seconds=round(statistics.median(seconds), 3) if seconds else None,
        call_max_seconds=round(max(seconds), 3) if seconds else None,
        silence_max_seconds=round(silences[-1], 3) if silences else None,
        silence_p99_seconds=round(silences[int(0.99 * (len(silences) - 1))], 3) if silences else None,
        rss_idle_kib=rss_idle,
        rss_peak_kib=rss_peak,
        errors=dict(Counter(sentence(o) for o in finished if o.is_error).most_common()),
        exceptions=sorted({o.exception for o in outcomes if o.exception})[:10],
    )


def print_report(report: Report) -> None:
    def mib(kib: int | None) -> str:
        return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"

    faults = ", ".join(f"{kind} x{count}" for kind, count in report.faults_injected.items()) or "none"
    print(
        f"\nLoad: {report.calls} concurrent kontext_edit calls over Streamable HTTP, "
        f"{report.sessions} sessions; "
        f"{report.task_seconds:g} s tasks, wait_seconds {report.wait_seconds:g}; "
        f"fault rate {report.fault_rate:g} (seed {report.seed})"
    )
    print(f"  faults injected     {faults}")
    print(
        f"  wall time           {report.wall_seconds:.2f} s "
        f"(call p50 {report.call_p50_seconds} s, max {report.call_max_seconds} s)"
    )
    print(
        f"  longest silence     {report.silence_max_seconds} s max, p99 {report.silence_p99_seconds} s "
        "(per call, between progress messages and the result; promised at most 5 s)"
    )
    print(f"  completed           {report.completed}")
    print(f"  unfinished          {report.unfinished}  (returned the task id, still running)")
    print(f"  errored             {report.errored}")
    for text, count in report.errors.items():
        print(f"    {count:>4} x {text if len(text) <= 150 else text[:149] + '…'}")
    print(f"  failed calls        {report.failed_calls}  (an exception instead of a result; must be 0)")
    for text in report.exceptions:
        print(f"         {text}")
    print(f"  simulator tasks     {report.simulator_tasks}")
    print(f"  lost                {report.lost}  (id sent by PiAPI, reached no caller; must be 0)")
    print(f"  missing from ledger {report.missing_from_ledger}  (must be 0)")
    print(
        f"  answer lost         {report.answer_lost}  (PiAPI's create answer swallowed by a fault; "
        f"callers not warned: {report.answer_lost_unwarned}, must be 0)"
    )
    print(f"  duplicated          {report.duplicated}  (must be 0)")
    print(f"  API key leaks       {report.key_leaks}  (results, progress, server log; must be 0)")
    print(f"  server RSS          idle {mib(report.rss_idle_kib)}, peak (VmHWM) {mib(report.rss_peak_kib)}")
    print(f"  verdict             {'OK' if report.ok else 'FAILED'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=None, help="concurrent calls (default 200; quick 40)")
    parser.add_argument("--sessions", type=int, default=None, help="MCP sessions sharing them (default 8)")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="share of faulty PiAPI answers (0.1)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the random faults")
    parser.add_argument("--duration", type=float, default=None, help="seconds a task runs (default 5)")
    parser.add_argument("--wait-seconds", type=float, default=60.0, help="each call's wait budget")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 40 calls, 2 s tasks")
    parser.add_argument("--keep", action="store_true", help="keep the logs and state folder")
    args = parser.parse_args(argv)
    if not 0 <= args.fault_rate <= 1:
        parser.error("--fault-rate must be between 0 and 1")
    settings = Settings(
        calls=args.calls or (40 if args.quick else 200),
        sessions=args.sessions or (4 if args.quick else 8),
        fault_rate=args.fault_rate,
        seed=args.seed,
        duration=args.duration if args.duration is not None else (2.0 if args.quick else 5.0),
        wait_seconds=args.wait_seconds,
    )

    def on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="piapi-load-"))
    print(f"... {settings.calls} calls; logs and state in {work}", file=sys.stderr, flush=True)
    report = anyio.run(run, settings, work)
    print_report(report)
    print(json.dumps(asdict(report) | {"ok": report.ok}, separators=(",", ":")))
    if report.ok and not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"logs and state kept in {work}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
