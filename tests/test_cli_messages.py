"""What ``piapi-mcp`` says to a person: help, log levels, a terminal, a busy port, the sandbox."""

from __future__ import annotations

import os
import pty
import re
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, TextContent

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.config import SETTINGS
from piapi_mcp.loopback import serve_app_on_loopback
from piapi_mcp.simulator import SimulatorControls

pytestmark = pytest.mark.anyio

_PACKAGE = Path(__file__).resolve().parents[1] / "piapi_mcp"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: no PIAPI_* setting of the machine, state and outputs under ``tmp_path``."""
    env = {name: os.environ[name] for name in ("PATH", "SYSTEMROOT") if name in os.environ}
    env |= {
        "HOME": str(tmp_path / "home"),
        "PIAPI_STATE_DIR": str(tmp_path / "state"),
        "PIAPI_OUTPUT_DIR": str(tmp_path / "out"),
    }
    return env | extra


async def _run(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(timeout):
        return await anyio.run_process(
            [sys.executable, "-m", "piapi_mcp", *args],
            env=env,
            cwd=cwd,
            check=False,
            stdin=subprocess.DEVNULL,
        )


async def test_help_lists_every_environment_variable_the_package_reads_with_the_key_first(
    tmp_path: Path,
) -> None:
    """``--help`` ends with the environment variables, PIAPI_API_KEY first, and misses none in the code."""
    done = await _run("--help", env=_env(tmp_path))
    out = done.stdout.decode()
    assert done.returncode == 0
    epilog = out.split("environment variables:", 1)[1]
    listed = re.findall(r"^\s+(PIAPI_[A-Z_]+)\s", epilog, re.MULTILINE)
    assert listed[0] == "PIAPI_API_KEY"
    in_code = {
        name
        for source in _PACKAGE.rglob("*.py")
        for name in re.findall(r"\"(PIAPI_[A-Z_]+)\"", source.read_text())
    }
    assert in_code <= set(listed), in_code - set(listed)
    assert [name for name, _ in SETTINGS] == listed


async def test_log_level_is_case_insensitive_and_read_from_piapi_log_level(tmp_path: Path) -> None:
    """``--log-level debug`` and ``PIAPI_LOG_LEVEL=Warning`` are taken; a wrong one is one line, exit 2."""
    key = {"PIAPI_API_KEY": "k"}
    debug = await _run("--log-level", "debug", env=_env(tmp_path, **key))
    assert debug.returncode == 0, debug.stderr.decode()
    assert " piapi_mcp INFO " in debug.stderr.decode()
    quiet = await _run(env=_env(tmp_path, PIAPI_LOG_LEVEL="Warning", **key))
    assert quiet.returncode == 0 and b" INFO " not in quiet.stderr, quiet.stderr.decode()
    flag_wins = await _run("--log-level", "INFO", env=_env(tmp_path, PIAPI_LOG_LEVEL="error", **key))
    assert b" piapi_mcp INFO " in flag_wins.stderr
    wrong = await _run(env=_env(tmp_path, PIAPI_LOG_LEVEL="loud", **key))
    lines = wrong.stderr.decode().strip().splitlines()
    assert wrong.returncode == 2 and len(lines) == 1 and "PIAPI_LOG_LEVEL" in lines[0], lines


async def test_debug_logging_keeps_other_libraries_at_warning_and_names_the_ledger_and_output_folders(
    tmp_path: Path,
) -> None:
    """At debug level only piapi_mcp's lines show; the start-up log names the ledger file and outputs."""
    done = await _run("--log-level", "DEBUG", env=_env(tmp_path, PIAPI_API_KEY="k"))
    err = done.stderr.decode()
    assert done.returncode == 0, err
    loggers = set(re.findall(r"^\S+ \S+ (\S+) (?:DEBUG|INFO) ", err, re.MULTILINE))
    assert loggers and all(name.split(".")[0] == "piapi_mcp" for name in loggers), loggers
    assert str(tmp_path / "state" / "tasks.sqlite3") in err, err
    assert str(tmp_path / "out") in err, err


async def test_a_bare_server_in_a_terminal_says_once_it_waits_for_a_host_and_suggests_the_demo(
    tmp_path: Path,
) -> None:
    """stdin a terminal: one notice on stderr naming the demo; stdout (the protocol) stays empty."""
    leader, follower = pty.openpty()
    try:
        with anyio.fail_after(30):
            process = await anyio.open_process(
                [sys.executable, "-m", "piapi_mcp", "--log-level", "warning"],
                env=_env(tmp_path, PIAPI_API_KEY="k"),
                stdin=follower,
            )
            async with process:
                assert process.stderr is not None
                said = b""
                while b"piapi-mcp demo" not in said:
                    said += await process.stderr.receive()
                process.terminate()
                await process.wait()
                assert process.stdout is not None
                rest = b"".join([chunk async for chunk in process.stderr])
                out = b"".join([chunk async for chunk in process.stdout])
    finally:
        os.close(follower)
        os.close(leader)
    text = (said + rest).decode()
    assert text.count("waiting for an MCP host") == 1, text
    assert "stdio MCP server" in text
    assert out == b""


async def test_a_server_under_a_host_says_nothing_about_terminals(tmp_path: Path) -> None:
    """stdin not a terminal (a host's pipe): no notice at all."""
    done = await _run("--log-level", "warning", env=_env(tmp_path, PIAPI_API_KEY="k"))
    assert done.returncode == 0
    assert b"waiting for an MCP host" not in done.stderr and b"demo" not in done.stderr


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_a_busy_port_is_one_sentence_and_exit_status_2(tmp_path: Path, transport: str) -> None:
    """A port another program listens on: one line naming the port and --port, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await _run(
            "--transport",
            transport,
            "--port",
            str(port),
            "--log-level",
            "warning",
            env=_env(tmp_path, PIAPI_API_KEY="k"),
        )
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2, lines
    assert len(lines) == 1 and f"Port {port}" in lines[0] and "--port" in lines[0], lines


async def test_demo_sandbox_with_a_key_uses_the_simulator_saves_apart_and_ends_with_next_steps(
    tmp_path: Path,
) -> None:
    """``demo --sandbox`` with a key set: simulated, saved under ``<outputs>/sandbox``, no dead URL printed."""
    env = _env(tmp_path, PIAPI_API_KEY="a-real-looking-key", PIAPI_SANDBOX_DURATION="0")
    done = await _run("demo", "--sandbox", env=env, cwd=tmp_path)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "simulator (--sandbox" in out
    assert "http://127.0.0.1" not in out, out
    saved = re.search(r"^Saved file: (.+\.png)$", out, re.MULTILINE)
    assert saved, out
    path = Path(saved.group(1))
    assert path.parent == tmp_path / "out" / "sandbox" and path.read_bytes().startswith(b"\x89PNG")
    after = out[saved.end() :]
    assert "piapi-mcp config" in after and "claude mcp add" in after and "build_bundle.py" in after, out


async def test_demo_edits_the_users_own_picture_given_by_a_relative_path(tmp_path: Path) -> None:
    """``demo --image pics/mine.png`` from the folder holding ``pics``: resolved, allowed, edited."""
    from PIL import Image

    (tmp_path / "pics").mkdir()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / "pics" / "mine.png")
    env = _env(tmp_path, PIAPI_SANDBOX_DURATION="0")
    done = await _run("demo", "--image", "pics/mine.png", env=env, cwd=tmp_path)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert f"editing {tmp_path / 'pics' / 'mine.png'}" in out
    assert re.search(r"^Saved file: .+\.png$", out, re.MULTILINE), out


async def test_demo_with_a_missing_picture_says_so_in_one_line(tmp_path: Path) -> None:
    """``demo --image nothing.png``: exit 2 and one sentence naming the path, no server started."""
    done = await _run("demo", "--image", "nothing.png", env=_env(tmp_path), cwd=tmp_path)
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, lines
    assert str(tmp_path / "nothing.png") in lines[0]


async def test_no_key_warning_only_when_no_key_is_set(tmp_path: Path) -> None:
    """Without a key the server warns about PIAPI_API_KEY; with one, or in the sandbox, it does not."""
    without = await _run(env=_env(tmp_path))
    assert b"PIAPI_API_KEY is not set" in without.stderr
    with_key = await _run(env=_env(tmp_path, PIAPI_API_KEY="k"))
    assert with_key.returncode == 0 and b"not set" not in with_key.stderr, with_key.stderr.decode()
    sandbox = await _run("--sandbox", env=_env(tmp_path))
    assert sandbox.returncode == 0 and b"not set" not in sandbox.stderr, sandbox.stderr.decode()


async def test_reading_an_unknown_task_resource_is_a_not_found_error_with_a_sentence(
    mcp_client: Client,
) -> None:
    """``piapi://tasks/<id>`` for an id PiAPI answers 404: the not-found code (-32602), not an internal error."""
    with pytest.raises(MCPError) as caught:
        await mcp_client.read_resource("piapi://tasks/0000-not-a-task")
    assert caught.value.error.code == INVALID_PARAMS
    assert "no such task" in caught.value.error.message


async def test_cancelling_a_finished_task_reports_it_as_it_ended_and_that_nothing_was_cancelled(
    mcp_client: Client, clock: ManualClock
) -> None:
    """``cancel_task`` on a completed task: its result, and one sentence that nothing was cancelled."""
    created = await mcp_client.call_tool(
        "kontext_edit",
        {"prompt": "make the sky purple", "image": "https://example.com/in.png", "wait_seconds": 0},
    )
    task_id = (created.structured_content or {})["task_id"]
    clock.advance(60)
    result = await mcp_client.call_tool("cancel_task", {"task_id": task_id})
    text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
    assert not result.is_error, text
    assert (result.structured_content or {})["status"] == "completed"
    assert f"Task {task_id} had already finished (completed); nothing was cancelled." in text


async def test_doctor_checks_the_key_for_free_and_each_folder_with_one_line_each(tmp_path: Path) -> None:
    """``piapi-mcp doctor``: ok lines and exit 0 when all is well; a FAIL line per problem and exit 1."""
    simulator = PiAPISimulator(controls=SimulatorControls(api_keys=frozenset({"good-key"})))
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    async with serve_app_on_loopback(simulator.app) as url:
        good = await _run(
            "doctor",
            env=_env(
                tmp_path, PIAPI_API_KEY="good-key", PIAPI_BASE_URL=url, PIAPI_ALLOWED_DIRS=str(pictures)
            ),
        )
        missing = tmp_path / "missing"
        bad = await _run(
            "doctor",
            env=_env(
                tmp_path,
                PIAPI_API_KEY="wrong-key",
                PIAPI_BASE_URL=url,
                PIAPI_ALLOWED_DIRS=os.pathsep.join([str(pictures), str(missing)]),
            ),
        )
    lines = good.stdout.decode().splitlines()
    assert good.returncode == 0, good.stdout.decode() + good.stderr.decode()
    assert lines and all(line.startswith("ok") for line in lines), lines
    assert any(line.startswith("ok    key:") for line in lines)
    assert any(str(pictures) in line for line in lines)
    assert any(str(tmp_path / "out") in line for line in lines)
    assert any(str(tmp_path / "state") in line for line in lines)
    assert {path for _, path in simulator.requests} == {"/account/info"}
    failed = [line for line in bad.stdout.decode().splitlines() if line.startswith("FAIL")]
    assert bad.returncode == 1
    assert len(failed) == 2 and "key:" in failed[0] and str(missing) in failed[1], failed
    assert "wrong-key" not in bad.stdout.decode() + bad.stderr.decode()
