"""A team's deployment under load: PostgreSQL + 3 stateless replicas + HAProxy, one replica killed mid-run.

    python benchmarks/cluster.py                  # 300 calls from 10 clients, 10 % faulty PiAPI answers
    python benchmarks/cluster.py --quick          # 60 calls, 4 s tasks: a smoke run

Everything runs on 127.0.0.1, each part in its own process: PostgreSQL from the installed binaries
(``tests/postgres.py``'s throw-away cluster), the PiAPI simulator (``piapi-mcp simulator --fault-rate
--webhooks``: a seeded share of faulty answers, and each task's end posted to the webhook endpoint its
create asked for, on the real clock), three ``piapi-mcp --transport streamable-http --stateless``
replicas sharing the ledger (``PIAPI_LEDGER_URL``) with ``PIAPI_PUBLIC_URL`` pointing at the balancer,
and HAProxy with ``deploy/haproxy.cfg``. The calls are ``kontext_edit``s with their own prompt, sent
by 10 clients (MCP over Streamable HTTP to the balancer, with the bearer token, one session per call);
every 10th is sent a second time, identically, a moment later (a double submit). A call that ends in an
error is retried once with the same arguments; a call cut by the killed replica resumes through the
balancer: ``get_task`` on the id its progress carried, else the task ``list_tasks`` shows for its prompt,
else the same call again. Mid-run one replica gets SIGKILL and is restarted a few seconds later.

Reported, from the simulator's own list of creates and the shared ledger:

- completed / errored (with the distinct sentences) / failed (an exception even after resuming);
- lost: a task the simulator created and whose id it sent, that reached no caller and no ledger row.
  Must be 0. Answer lost: a create whose answer a fault swallowed (nobody was told its id), counted
  apart as in ``load.py``: found later (by the history search) or not, and its caller must be warned;
- paid twice: the same request (prompt) created more than once. Must be 0;
- cut / resumed: callers whose replica died, and how many fetched their result through the balancer
  with ``get_task``/``list_tasks`` (the rest by calling again). Every cut caller must get its result;
- wall time; detection lag (a call's return minus its task's end) in two extra phases without faults,
  each with tasks of a length not learned yet (1.37x, then 1.73x the main run's): webhooks delivered,
  then webhooks dropped (polling only).

Exits 1 when lost, paid twice, failed or unresumed callers are not 0. Every wait is bounded; every
child process is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
import httpx2
from _processes import HOST, REPO, START_TIMEOUT, Children, free_port, wait_for_port
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

sys.path.insert(0, str(REPO))
from tests.postgres import PostgresServer, find_bin_dir

API_KEY: Final = "pk-cluster-benchmark-4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c"
TOKEN: Final = "cluster-bench-token-9b1d3f5a7c9e1b3d5f7a"
SECRET: Final = "cluster-bench-webhook-secret-2468ace"
IMAGE: Final = "https://example.com/cluster-input.png"
MAY_HAVE_CREATED: Final = "may have created the task"
REPLICAS: Final = 3
HAPROXY_CFG: Final = REPO / "deploy" / "haproxy.cfg"
#: Beyond its wait budget, how long one call may take before it counts as hung.
CALL_SLACK: Final = 60.0
_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Settings:
    calls: int
    clients: int
    fault_rate: float
    seed: int
    duration: float
    wait_seconds: float
    kill_after: float
    restart_after: float
    lag_calls: int


@dataclass
class Attempt:
    """One tool call a caller made: what it asked, what came back (or the exception), and when."""

    tool: str
    dump: str = ""
    text: str = ""
    is_error: bool = False
    status: str | None = None
    task_id: str | None = None
    progress: list[str] = field(default_factory=list)
    exception: str | None = None
    returned_at: float = 0.0


@dataclass
class Caller:
    """One logical call (a prompt) and every attempt it took to get its result."""

    index: int
    prompt: str
    attempts: list[Attempt] = field(default_factory=list)
    cut: bool = False
    resumed_by: str | None = None

    @property
    def final(self) -> Attempt | None:
        answered = [a for a in self.attempts if a.exception is None]
        return answered[-1] if answered else None

    def saw(self, task_id: str) -> bool:
        return any(task_id in a.dump or any(task_id in m for m in a.progress) for a in self.attempts)

    def seen_ids(self) -> list[str]:
        """Task ids this caller was told of: in its calls' results and progress (not in listings)."""
        ids: list[str] = []
        for a in self.attempts:
            if a.tool != "list_tasks":
                ids += [a.task_id] if a.task_id else []
                ids += [found for m in a.progress for found in _IDS.findall(m)]
        return ids


# --- processes -------------------------------------------------------------------------------------


class Cluster:
    """PostgreSQL, the simulator, three replicas and HAProxy, all on loopback."""

    def __init__(self, settings: Settings, work: Path) -> None:
        self.settings = settings
        self.work = work
        self.children = Children(work)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIAPI_")} | {
            "HOME": str(work / "home")
        }
        self.sim_port, self.lb_port = free_port(), free_port()
        self.ports = [free_port() for _ in range(REPLICAS)]
        self.replicas: list[subprocess.Popen[bytes]] = []
        self.postgres: PostgresServer | None = None
        self.ledger_url = ""

    @property
    def sim_url(self) -> str:
        return f"http://{HOST}:{self.sim_port}"

    @property
    def mcp_url(self) -> str:
        return f"http://{HOST}:{self.lb_port}/mcp"

    async def start(self) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise SystemExit("PostgreSQL is not installed (Debian: apt-get install postgresql).")
        self.postgres = PostgresServer(bin_dir)
        self.postgres.init()
        self.postgres.start()
        self.ledger_url = self.postgres.new_database()
        s = self.settings
        simulator = self.children.start(
            "simulator",
            [
                sys.executable, "-m", "piapi_mcp", "simulator", "--port", str(self.sim_port),
                "--duration", f"{s.duration:g}", "--queue-seconds", "0.5",
                "--fault-rate", f"{s.fault_rate:g}", "--fault-seed", str(s.seed), "--webhooks",
            ],
            self.env,
        )  # fmt: skip
        await wait_for_port(self.sim_port, simulator)
        for number in range(REPLICAS):
            # One at a time at first, so the schema is created once.
            self.replicas.append(await self.start_replica(number))
        balancer = self.children.start(
            "haproxy",
            ["haproxy", "-W", "-db", "-f", str(HAPROXY_CFG)],
            self.env
            | {"PIAPI_LB_BIND": f"{HOST}:{self.lb_port}"}
            | {f"PIAPI_REPLICA_{n + 1}": f"{HOST}:{port}" for n, port in enumerate(self.ports)},
        )
        await wait_for_port(self.lb_port, balancer)

    async def start_replica(self, number: int) -> subprocess.Popen[bytes]:
        folder = self.work / f"replica{number + 1}"
        proc = self.children.start(
            f"replica{number + 1}",
            [
                sys.executable, "-m", "piapi_mcp", "--transport", "streamable-http", "--stateless",
                "--host", HOST, "--port", str(self.ports[number]),
            ],
            self.env
            | {
                "PIAPI_API_KEY": API_KEY,
                "PIAPI_BASE_URL": self.sim_url,
                "PIAPI_LEDGER_URL": self.ledger_url,
                "PIAPI_MCP_AUTH_TOKEN": TOKEN,
                "PIAPI_PUBLIC_URL": f"http://{HOST}:{self.lb_port}",
                "PIAPI_WEBHOOK_SECRET": SECRET,
                "PIAPI_STATE_DIR": str(folder / "state"),
                "PIAPI_OUTPUT_DIR": str(folder / "outputs"),
            },
        )  # fmt: skip
        await wait_for_port(self.ports[number], proc)
        return proc

    async def kill_and_restart(self, number: int, log: list[str]) -> None:
        """SIGKILL replica ``number`` once the calls are waiting, then start it again on its port."""
        await anyio.sleep(self.settings.kill_after)
        victim = self.replicas[number]
        victim.kill()  # SIGKILL: no goodbye, its open responses are cut
        victim.wait(5)
        log.append(f"replica{number + 1} (pid {victim.pid}) killed with SIGKILL")
        await anyio.sleep(self.settings.restart_after)
        self.children.stop(victim)
        self.replicas[number] = await self.start_replica(number)
        log.append(f"replica{number + 1} restarted (pid {self.replicas[number].pid})")

    def ledger_ids(self) -> set[str]:
        import psycopg

        with psycopg.connect(self.ledger_url, connect_timeout=10) as conn:
            return {str(row[0]) for row in conn.execute("SELECT task_id FROM tasks")}

    def stop(self) -> None:
        self.children.stop_all()
        if self.postgres is not None:
            self.postgres.remove()


# --- callers ---------------------------------------------------------------------------------------


def _http(timeout: float) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        trust_env=False,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=httpx2.Timeout(10.0, read=timeout),
        limits=httpx2.Limits(max_connections=200, max_keepalive_connections=50),
    )


async def attempt(
    http: httpx2.AsyncClient, url: str, tool: str, arguments: dict[str, Any], wait: float
) -> Attempt:
    """One tool call in its own MCP session (stateless: any replica answers it)."""
    result = Attempt(tool=tool)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        result.progress.append(message or "")

    try:
        with anyio.fail_after(wait + CALL_SLACK):
            async with Client(streamable_http_client(url, http_client=http)) as client:
                answer = await client.call_tool(tool, arguments, progress_callback=on_progress)
        record(result, answer)
    except Exception as err:  # a cut connection surfaces as an exception group from the transport
        result.exception = _exception_text(err)
    result.returned_at = time.time()
    return result


def _exception_text(err: BaseException) -> str:
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    return f"{type(err).__name__}: {err}"[:200]


def record(result: Attempt, answer: CallToolResult) -> None:
    data: dict[str, Any] = answer.structured_content or {}
    result.is_error = bool(answer.is_error)
    result.status = str(data["status"]) if "status" in data else None
    result.task_id = str(data["task_id"]) if data.get("task_id") else None
    result.text = "\n".join(block.text for block in answer.content if isinstance(block, TextContent))
    result.dump = answer.model_dump_json()


async def run_caller(http: httpx2.AsyncClient, url: str, caller: Caller, wait: float, delay: float) -> None:
    """Call, then retry an error once or resume a cut call through the balancer."""
    await anyio.sleep(delay)
    edit = {"prompt": caller.prompt, "image": IMAGE, "wait_seconds": wait}
    first = await attempt(http, url, "kontext_edit", edit, wait)
    caller.attempts.append(first)
    if first.exception is not None:
        caller.cut = True
        await resume(http, url, caller, edit, wait)
    elif first.is_error:
        await anyio.sleep(1.0)
        again = await attempt(http, url, "kontext_edit", edit, wait)
        caller.attempts.append(again)
        if again.exception is not None:
            caller.cut = True
            await resume(http, url, caller, edit, wait)


async def resume(
    http: httpx2.AsyncClient, url: str, caller: Caller, edit: dict[str, Any], wait: float
) -> None:
    """The caller's replica died mid-call: fetch the result from another one (bounded tries)."""
    refused: set[str] = set()
    for _ in range(3):
        await anyio.sleep(1.0)
        ids = [found for found in caller.seen_ids() if found not in refused]
        how = "get_task"
        if not ids:
            listing = await attempt(http, url, "list_tasks", {"limit": 200}, 30.0)
            caller.attempts.append(listing)
            ids = _ids_for_prompt(listing, caller.prompt)
            how = "list_tasks"
        if ids:
            got = await attempt(http, url, "get_task", {"task_id": ids[-1], "wait_seconds": wait}, wait)
            caller.attempts.append(got)
            if got.exception is None and not got.is_error:
                caller.resumed_by = how
                return
            if got.exception is None:
                refused.add(ids[-1])
            continue
        again = await attempt(http, url, "kontext_edit", edit, wait)
        caller.attempts.append(again)
        if again.exception is None:
            caller.resumed_by = "calling again"
            return


def _ids_for_prompt(listing: Attempt, prompt: str) -> list[str]:
    if listing.exception is not None or listing.is_error:
        return []
    tasks = json.loads(listing.dump).get("structured_content", {}).get("tasks", [])
    return [str(t["task_id"]) for t in tasks if (t.get("input") or {}).get("prompt") == prompt]


async def load_phase(cluster: Cluster, settings: Settings, log: list[str]) -> tuple[list[Caller], float]:
    """The main run: calls from the clients (every 10th twice), one replica killed and restarted."""
    callers = [Caller(i, f"cluster edit #{i} {uuid.uuid4().hex[:8]}") for i in range(settings.calls)]
    https = [_http(settings.wait_seconds + CALL_SLACK) for _ in range(settings.clients)]
    doubles = [Caller(c.index, c.prompt) for c in callers[::10]]
    t0 = time.perf_counter()
    try:
        with anyio.fail_after(START_TIMEOUT + 3 * (settings.wait_seconds + CALL_SLACK)):
            async with anyio.create_task_group() as group:
                group.start_soon(cluster.kill_and_restart, 1, log)
                for caller in callers:
                    group.start_soon(
                        run_caller, https[caller.index % settings.clients], cluster.mcp_url, caller,
                        settings.wait_seconds, 0.0,
                    )  # fmt: skip
                for twin in doubles:
                    group.start_soon(
                        run_caller, https[(twin.index + 1) % settings.clients], cluster.mcp_url, twin,
                        settings.wait_seconds, 0.5,
                    )  # fmt: skip
    finally:
        for http in https:
            await http.aclose()
    return callers + doubles, time.perf_counter() - t0


async def lag_phase(cluster: Cluster, settings: Settings, drop: bool, duration: float) -> list[float]:
    """Calls without faults; how late each call returned after its task's end (webhooks or polling).

    The tasks run ``duration`` s, a length the replicas have not learned, so polling cannot simply
    ask at the expected end: its lag is that of its schedule.
    """
    async with httpx2.AsyncClient(base_url=cluster.sim_url, timeout=10.0, trust_env=False) as sim:
        (
            await sim.post(
                "/_simulator/controls", json={"fault_rate": 0.0, "drop_webhooks": drop, "duration": duration}
            )
        ).raise_for_status()
        callers = [Caller(i, f"lag edit #{i} {uuid.uuid4().hex[:8]}") for i in range(settings.lag_calls)]
        async with _http(settings.wait_seconds + CALL_SLACK) as http:
            with anyio.fail_after(settings.wait_seconds + 2 * CALL_SLACK):
                async with anyio.create_task_group() as group:
                    for caller in callers:
                        # Spread over a second so the ends fall at every phase of the poll schedule.
                        group.start_soon(
                            run_caller, http, cluster.mcp_url, caller, settings.wait_seconds,
                            caller.index / max(1, settings.lag_calls),
                        )  # fmt: skip
        ends = {
            t["task_id"]: float(t["ends_at"]) for t in (await sim.get("/_simulator/tasks")).json()["tasks"]
        }
    lags = []
    for caller in callers:
        final = caller.final
        if final is not None and final.status == "completed" and final.task_id in ends:
            lags.append(final.returned_at - ends[final.task_id])
    return sorted(lags)


# --- the report ------------------------------------------------------------------------------------


def sentence(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = re.sub(r"^Error executing tool \w+: ", "", first)
    return re.sub(r"\d+(\.\d+)?", "N", _IDS.sub("<id>", first))


def _stats(lags: list[float]) -> dict[str, float | int | None]:
    if not lags:
        return {"n": 0, "median": None, "max": None}
    return {"n": len(lags), "median": round(statistics.median(lags), 3), "max": round(lags[-1], 3)}


def analyse(
    settings: Settings,
    callers: list[Caller],
    tasks: list[dict[str, Any]],
    ledger_ids: set[str],
    wall: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    by_prompt: dict[str, list[Caller]] = {}
    for caller in callers:
        by_prompt.setdefault(caller.prompt, []).append(caller)
    per_prompt = Counter(str(t["prompt"]) for t in tasks if str(t["prompt"]).startswith("cluster edit"))
    mine = [t for t in tasks if str(t["prompt"]).startswith("cluster edit")]

    def reached(task: dict[str, Any]) -> bool:
        return task["task_id"] in ledger_ids or any(
            c.saw(task["task_id"]) for c in by_prompt.get(str(task["prompt"]), [])
        )

    # As in load.py: a create whose answer a fault swallowed never told anyone its id; its caller must
    # have been told the task may exist, and the ledger's history search may still find it.
    lost = [t["task_id"] for t in mine if not t["answer_lost"] and not reached(t)]
    answer_lost = [t for t in mine if t["answer_lost"]]
    unwarned = [
        t
        for t in answer_lost
        if not reached(t)
        and not any(
            MAY_HAVE_CREATED in a.text or "may already be running" in a.text
            for c in by_prompt.get(str(t["prompt"]), [])
            for a in c.attempts
        )
    ]
    finals = [(c, c.final) for c in callers]
    completed = [c for c, f in finals if f is not None and not f.is_error and f.status == "completed"]
    errored = [f for _, f in finals if f is not None and f.is_error]
    cut = [c for c in callers if c.cut]
    report: dict[str, Any] = {
        "calls": settings.calls,
        "double_submits": len(callers) - settings.calls,
        "clients": settings.clients,
        "fault_rate": settings.fault_rate,
        "seed": settings.seed,
        "task_seconds": settings.duration,
        "wall_seconds": round(wall, 2),
        "completed": len(completed),
        "unfinished": sum(
            1 for _, f in finals if f is not None and not f.is_error and f.status != "completed"
        ),
        "errored": len(errored),
        "errors": dict(Counter(sentence(f.text) for f in errored).most_common()),
        "failed": sum(1 for _, f in finals if f is None),
        "exceptions": sorted({a.exception for c in callers for a in c.attempts if a.exception})[:8],
        "simulator_creates": sum(per_prompt.values()),
        "paid_twice": sum(count - 1 for count in per_prompt.values() if count > 1),
        "lost": len(lost),
        "lost_ids": lost[:5],
        "answer_lost": len(answer_lost),
        "answer_lost_found": sum(1 for t in answer_lost if reached(t)),
        "answer_lost_unwarned": len(unwarned),
        "cut": len(cut),
        "resumed_by": dict(Counter(c.resumed_by or "not resumed" for c in cut)),
        "retried_after_error": sum(1 for c in callers if not c.cut and len(c.attempts) > 1),
    }
    return report | extra


def verdict(report: dict[str, Any]) -> bool:
    unresumed = report["resumed_by"].get("not resumed", 0)
    return not (
        report["lost"]
        or report["answer_lost_unwarned"]
        or report["paid_twice"]
        or report["failed"]
        or unresumed
    )


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nCluster: {report['calls']} kontext_edit calls (+{report['double_submits']} double submits) from "
        f"{report['clients']} clients through HAProxy to {REPLICAS} stateless replicas on PostgreSQL; "
        f"{report['task_seconds']:g} s tasks, fault rate {report['fault_rate']:g} (seed {report['seed']})"
    )
    for line in report["events"]:
        print(f"  event               {line}")
    faults = ", ".join(f"{k} x{v}" for k, v in sorted(report["faults_injected"].items())) or "none"
    print(f"  faults injected     {faults}")
    print(f"  wall time           {report['wall_seconds']:.2f} s")
    print(f"  completed           {report['completed']}")
    print(f"  unfinished          {report['unfinished']}  (returned the task id, still running)")
    print(f"  errored             {report['errored']}")
    for text, count in report["errors"].items():
        print(f"    {count:>4} x {text if len(text) <= 160 else text[:159] + '…'}")
    print(f"  failed              {report['failed']}  (no answer even after resuming; must be 0)")
    for text in report["exceptions"]:
        print(f"         {text}")
    print(f"  simulator creates   {report['simulator_creates']}")
    print(
        f"  lost                {report['lost']}  "
        "(created, its id reached no caller and no ledger row; must be 0)"
    )
    print(
        f"  answer lost         {report['answer_lost']}  (PiAPI created it, a fault swallowed the answer; "
        f"found later via history: {report['answer_lost_found']}; "
        f"callers not warned: {report['answer_lost_unwarned']}, must be 0)"
    )
    print(f"  paid twice          {report['paid_twice']}  (same request created again; must be 0)")
    print(f"  cut by the kill     {report['cut']}; resumed through the balancer: {report['resumed_by']}")
    print(f"  retried after error {report['retried_after_error']}")
    print(f"  webhooks            {report['webhooks']}")
    print(
        f"  detection lag       webhooks {report['lag_webhooks']}; "
        f"webhooks dropped (polling) {report['lag_polling']}"
    )
    print(f"  verdict             {'OK' if verdict(report) else 'FAILED'}")


async def run(settings: Settings, work: Path) -> dict[str, Any]:
    cluster = Cluster(settings, work)
    events: list[str] = []
    try:
        with anyio.fail_after(START_TIMEOUT * 3):
            await cluster.start()
        callers, wall = await load_phase(cluster, settings, events)
        # What went wrong for whom, kept with the logs (--keep, or a failed run) to look into.
        troubled = [c for c in callers if (c.cut and not c.resumed_by) or c.final is None or c.final.is_error]
        (work / "troubled-callers.json").write_text(json.dumps([asdict(c) for c in troubled], indent=1))
        async with httpx2.AsyncClient(base_url=cluster.sim_url, timeout=10.0, trust_env=False) as sim:
            seen = (await sim.get("/_simulator/tasks")).json()
        lag_webhooks = await lag_phase(cluster, settings, drop=False, duration=settings.duration * 1.37)
        lag_polling = await lag_phase(cluster, settings, drop=True, duration=settings.duration * 1.73)
        for proc in cluster.replicas:  # a stopped replica has written what it holds
            cluster.children.stop(proc)
        ledger_ids = cluster.ledger_ids()
        answers = Counter(str(w["answer"]) for w in seen.get("webhooks", []))
        return analyse(
            settings,
            callers,
            seen["tasks"],
            ledger_ids,
            wall,
            {
                "events": events,
                "faults_injected": seen.get("random_faults", {}),
                "webhooks": dict(answers),
                "lag_webhooks": _stats(lag_webhooks),
                "lag_polling": _stats(lag_polling),
            },
        )
    finally:
        cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=None, help="concurrent calls (default 300; quick 60)")
    parser.add_argument("--clients", type=int, default=10, help="clients sharing them (10)")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="share of faulty PiAPI answers (0.1)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the random faults")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds a task runs (default 10; quick 4)"
    )
    parser.add_argument("--wait-seconds", type=float, default=120.0, help="each call's wait budget")
    parser.add_argument("--kill-after", type=float, default=None, help="seconds into the run of the SIGKILL")
    parser.add_argument("--restart-after", type=float, default=3.0, help="seconds the replica stays dead")
    parser.add_argument("--lag-calls", type=int, default=20, help="calls per detection-lag phase (20)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 60 calls, 4 s tasks")
    parser.add_argument("--keep", action="store_true", help="keep the logs")
    args = parser.parse_args(argv)
    duration = args.duration if args.duration is not None else (4.0 if args.quick else 10.0)
    settings = Settings(
        calls=args.calls or (60 if args.quick else 300),
        clients=args.clients,
        fault_rate=args.fault_rate,
        seed=args.seed,
        duration=duration,
        wait_seconds=args.wait_seconds,
        kill_after=args.kill_after if args.kill_after is not None else duration / 2,
        restart_after=args.restart_after,
        lag_calls=args.lag_calls,
    )

    def on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="piapi-cluster-"))
    print(f"... {settings.calls} calls; logs in {work}", file=sys.stderr, flush=True)
    report = anyio.run(run, settings, work)
    print_report(report)
    ok = verdict(report)
    print(json.dumps(report | {"ok": ok}, separators=(",", ":")))
    if ok and not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"logs kept in {work}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
