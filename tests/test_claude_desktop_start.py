"""Issue 10's "done when": the server started exactly as Claude Desktop starts it, from the entry
``piapi-mcp config --sandbox`` printed, reads a picture in the default Pictures folder and refuses one
elsewhere with a sentence naming PIAPI_ALLOWED_DIRS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment

from tests.helpers import png_bytes, text_of

#: Real seconds the whole session may take: two process start-ups and a sandbox edit of under a second.
SESSION_TIMEOUT = 60


def _printed_entry(home: Path) -> dict[str, object]:
    """``piapi-mcp config --sandbox`` run as a user would in a terminal, with ``home`` as the home folder."""
    run = subprocess.run(
        [sys.executable, "-m", "piapi_mcp", "config", "--sandbox"],
        cwd=home,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(home), "USERPROFILE": str(home)},
        capture_output=True,
        text=True,
        timeout=SESSION_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr
    entry: dict[str, object] = json.loads(run.stdout)["mcpServers"]["piapi"]
    return entry


@pytest.mark.anyio
async def test_started_as_claude_desktop_does_a_picture_in_pictures_is_edited_and_one_elsewhere_refused(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    for name in ("Pictures", "Desktop", "Downloads"):
        (home / name).mkdir(parents=True)
    inside = home / "Pictures" / "holiday.png"
    inside.write_bytes(png_bytes())
    outside = tmp_path / "elsewhere" / "pic.png"
    outside.parent.mkdir()
    outside.write_bytes(png_bytes())

    entry = _printed_entry(home)
    command, args, env = entry["command"], entry["args"], entry["env"]
    assert isinstance(command, str) and isinstance(args, list) and isinstance(env, dict)
    # What an MCP host passes besides the entry's env: its few inherited variables, and the user's home.
    host_env = {**get_default_environment(), "HOME": str(home), "USERPROFILE": str(home)}
    # The one addition: a sandbox edit lasting 0.2 s instead of 8, so the test is quick.
    params = StdioServerParameters(
        command=command,
        args=args,
        env={**host_env, **env, "PIAPI_SANDBOX_DURATION": "0.2"},
        cwd=tmp_path.anchor,
    )

    with anyio.fail_after(SESSION_TIMEOUT):
        async with Client(params) as client:
            accepted = await client.call_tool(
                "kontext_edit", {"prompt": "make it purple", "image": str(inside), "wait_seconds": 30}
            )
            refused = await client.call_tool(
                "kontext_edit", {"prompt": "make it purple", "image": str(outside), "wait_seconds": 30}
            )

    assert not accepted.is_error, text_of(accepted)
    assert "completed" in text_of(accepted).lower(), text_of(accepted)
    message = text_of(refused)
    assert refused.is_error and "outside the folders" in message and "PIAPI_ALLOWED_DIRS" in message, message
    assert str(outside) in message
    # The sandbox's simulated output went to its own folder under the (fake) home, not beside the picture.
    assert list((home / "Pictures" / "piapi-mcp" / "sandbox").iterdir())
