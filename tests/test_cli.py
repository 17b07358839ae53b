"""The ``piapi-mcp`` command as a user runs it: help, the demo, bad settings, no API key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import TextContent

from tests.helpers import TOOLS

pytestmark = pytest.mark.anyio

EDIT = {"prompt": "make the sky purple", "image": "https://example.com/in.png"}


def _clean_env(**extra: str) -> dict[str, str]:
    """A minimal environment without any PIAPI_* setting of the machine running the tests."""
    env = {
        name: os.environ[name]
        for name in ("PATH", "HOME", "SYSTEMROOT", "PIAPI_STATE_DIR", "PIAPI_OUTPUT_DIR")
        if name in os.environ
    }
    return env | extra


async def _piapi_mcp(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(timeout):
        return await anyio.run_process(
            [sys.executable, "-m", "piapi_mcp", *args],
            env=env,
            cwd=cwd,
            check=False,
            stdin=subprocess.DEVNULL,
        )


async def test_help_lists_the_transports_and_the_demo_command() -> None:
    """``piapi-mcp --help`` names every transport and the demo sub-command."""
    done = await _piapi_mcp("--help", env=_clean_env())
    out = done.stdout.decode()
    assert done.returncode == 0
    for word in ("stdio", "sse", "streamable-http", "demo"):
        assert word in out


async def test_demo_without_a_key_edits_a_local_picture_in_the_sandbox_and_ends_with_the_saved_file(
    tmp_path: Path,
) -> None:
    """With no PIAPI_API_KEY the demo edits a local file through the simulator and prints the saved path."""
    env = _clean_env(PIAPI_SANDBOX_DURATION="0")
    env.pop("PIAPI_OUTPUT_DIR", None)
    done = await _piapi_mcp("demo", env=env, cwd=tmp_path, timeout=30)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    picture = tmp_path / "piapi-demo-output" / "input.png"
    assert f"editing {picture}" in out and picture.read_bytes().startswith(b"\x89PNG")
    saved = re.search(r"^Saved file: (.+\.png)$", out, re.MULTILINE)
    assert saved and "piapi-mcp config" in out[saved.end() :], out
    path = Path(saved.group(1))
    assert path.parent == tmp_path / "piapi-demo-output" / "sandbox" and path != picture
    assert path.read_bytes().startswith(b"\x89PNG")


async def test_a_wait_seconds_setting_that_is_not_a_number_stops_the_server_with_one_line() -> None:
    """PIAPI_WAIT_SECONDS=abc exits with status 2 and a single line naming the variable."""
    done = await _piapi_mcp(env=_clean_env(PIAPI_API_KEY="k", PIAPI_WAIT_SECONDS="abc"))
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2
    assert len(lines) == 1 and "PIAPI_WAIT_SECONDS" in lines[0], lines
    assert done.stdout == b""


async def test_stdio_server_without_a_key_starts_and_tells_how_to_set_one() -> None:
    """Without PIAPI_API_KEY the server lists its tools, and an edit says to set the key or use --sandbox."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "piapi_mcp", "--log-level", "ERROR"], env=_clean_env()
    )
    with anyio.fail_after(20):
        async with Client(params) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert tools == TOOLS
            result = await client.call_tool("kontext_edit", EDIT)
    text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
    assert result.is_error
    assert "PIAPI_API_KEY" in text and "--sandbox" in text, text
