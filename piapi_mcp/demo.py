"""``piapi-mcp demo``: one Kontext edit through a real MCP client session, printed for a person.

It launches this package's server over stdio, exactly as an MCP host would (against the built-in
simulator when no PIAPI_API_KEY is set), calls ``kontext_edit`` with progress, resumes with
``get_task`` if the first call's budget runs out, and prints the edited image's URL.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, ResourceLink

from piapi_mcp.cli import Config

_PASSED_ENV = (
    "PIAPI_API_KEY",
    "PIAPI_BASE_URL",
    "PIAPI_WAIT_SECONDS",
    "PIAPI_HTTP_TIMEOUT",
    "PIAPI_SANDBOX_DURATION",
    "PIAPI_STATE_DIR",
    "XDG_STATE_HOME",
    "HOME",
)


def _say(text: str) -> None:
    print(text, flush=True)


async def run_demo(config: Config, prompt: str, image: str, wait_seconds: float | None) -> int:
    """Run the demo; returns the process exit code (0 when an image URL was printed)."""
    sandbox = config.sandbox or config.api_key is None
    args = ["-m", "piapi_mcp", "--log-level", "WARNING"] + (["--sandbox"] if sandbox else [])
    # A stdio child inherits almost nothing from us; hand it the PiAPI settings explicitly.
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env["PATH"] = os.environ.get("PATH", "")
    where = "the built-in PiAPI simulator (no key set, no credits used)" if sandbox else config.base_url
    _say(f"piapi-mcp demo: editing {image}\n  prompt: {prompt!r}\n  against: {where}")

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        _say(f"  [{progress:5.1f} s] {message}")

    params = StdioServerParameters(command=sys.executable, args=args, env=env)
    async with Client(params) as client:
        arguments: dict[str, Any] = {"prompt": prompt, "image": image}
        if wait_seconds is not None:
            arguments["wait_seconds"] = wait_seconds
        result = await client.call_tool("kontext_edit", arguments, progress_callback=on_progress)
        while _still_running(result):
            assert result.structured_content is not None
            task_id = result.structured_content["task_id"]
            _say(f"  not finished within the budget; resuming with get_task(task_id={task_id!r})")
            resume: dict[str, Any] = {"task_id": task_id, "wait_seconds": wait_seconds or config.wait_seconds}
            result = await client.call_tool("get_task", resume, progress_callback=on_progress)
        # Fetch while the server (and, in the sandbox, its simulator) is still up.
        return await _report(result)


def _still_running(result: CallToolResult) -> bool:
    return not result.is_error and bool(result.structured_content) and not result.structured_content["done"]


async def _report(result: CallToolResult) -> int:
    text = next((block.text for block in result.content if block.type == "text"), "")
    _say("\n" + text)
    images = [b.uri for b in result.content if isinstance(b, ResourceLink) and b.uri.startswith("http")]
    if result.is_error or not images:
        return 1
    _say(f"\nEdited image: {images[0]}")
    assert result.structured_content is not None
    target = Path("piapi-demo-output") / f"{result.structured_content['task_id']}.png"
    try:
        async with httpx2.AsyncClient(timeout=30) as http:
            response = await http.get(images[0])
            response.raise_for_status()
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(response.content)
        _say(f"Saved a copy: {target.resolve()}")
    except (httpx2.HTTPError, OSError) as err:
        _say(
            f"(Could not save a copy: {type(err).__name__}; the URL above still works while PiAPI keeps it.)"
        )
    return 0
