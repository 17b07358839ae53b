"""``piapi-mcp demo``: one Kontext edit through a real MCP client session, printed for a person.

It draws a local picture, launches this package's server over stdio exactly as an MCP host
would (against the built-in simulator when no PIAPI_API_KEY is set), calls ``kontext_edit`` on that
file with progress, resumes with ``get_task`` if the first call's budget runs out, and ends with
the path of the saved file (and PiAPI's URL, not the sandbox's, which dies with the demo) and what to
do next.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Final

from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, ImageContent, TextContent

from piapi_mcp.config import Config
from piapi_mcp.wording import ended, seconds

_PASSED_ENV = (
    "PIAPI_API_KEY",
    "PIAPI_BASE_URL",
    "PIAPI_WAIT_SECONDS",
    "PIAPI_HTTP_TIMEOUT",
    "PIAPI_SANDBOX_DURATION",
    "PIAPI_STATE_DIR",
    "PIAPI_OUTPUT_DIR",
    "PIAPI_SAVE_OUTPUTS",
    "PIAPI_PREVIEW",
    "PIAPI_UPLOAD_URL",
    "PIAPI_ALLOWED_DIRS",
    "XDG_STATE_HOME",
    "HOME",
)


def _say(text: str) -> None:
    print(text, flush=True)


DEMO_FOLDER: Final = Path("piapi-demo-output")


def draw_demo_picture(path: Path) -> Path:
    """Draw the demo's input: a small landscape with a blue sky, a sun and green hills (PNG)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (768, 512), (110, 170, 235))
    draw = ImageDraw.Draw(image)
    draw.ellipse((560, 60, 680, 180), fill=(255, 214, 90))
    draw.ellipse((-200, 300, 500, 800), fill=(70, 150, 70))
    draw.ellipse((250, 330, 1000, 850), fill=(50, 120, 55))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


async def run_demo(config: Config, prompt: str, image: str | None, wait_seconds: float | None) -> int:
    """Run the demo; returns the process exit code (0 when the edited image was produced)."""
    sandbox = config.sandbox or config.api_key is None
    args = ["-m", "piapi_mcp", "--log-level", "WARNING"] + (["--sandbox"] if sandbox else [])
    # A stdio child inherits almost nothing from us; hand it the PiAPI settings explicitly.
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env["PATH"] = os.environ.get("PATH", "")
    picture: Path | None = None
    if image is None:
        picture = draw_demo_picture((DEMO_FOLDER / "input.png").resolve())
    elif "://" not in image and not image.startswith("data:"):
        # The user's own file, relative to where they stand: the server gets its absolute path.
        picture = Path(image).expanduser().resolve()
        if not picture.is_file():
            print(
                f"piapi-mcp demo: there is no file at {picture}; give a picture's path or URL.",
                file=sys.stderr,
            )
            return 2
    if picture is not None:
        image = str(picture)
        env["PIAPI_ALLOWED_DIRS"] = os.pathsep.join(
            filter(None, [env.get("PIAPI_ALLOWED_DIRS"), str(picture.parent)])
        )
    env.setdefault("PIAPI_OUTPUT_DIR", str(DEMO_FOLDER.resolve()))
    why = "no key set" if config.api_key is None else "--sandbox"
    where = f"the built-in PiAPI simulator ({why}, no credits used)" if sandbox else config.base_url
    _say(f"piapi-mcp demo: editing {image}\n  prompt: {prompt!r}\n  against: {where}")

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        _say(f"  [{seconds(progress):>7}] {message}")

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
    return _report(result, sandbox)


def _still_running(result: CallToolResult) -> bool:
    return not result.is_error and bool(result.structured_content) and not result.structured_content["done"]


def _report(result: CallToolResult, sandbox: bool) -> int:
    text = next((block.text for block in result.content if isinstance(block, TextContent)), "")
    data = result.structured_content or {}
    if sandbox:
        # The sandbox's URLs die with it when the demo exits: the saved file is what to open.
        dead = {output.get("url") for output in data.get("outputs") or []}
        text = "\n".join(line for line in text.splitlines() if line.strip() not in dead)
    _say("\n" + text)
    if result.is_error or not data.get("outputs"):
        return 1
    image = data["outputs"][0]
    if not sandbox:
        _say(f"\nEdited image: {image['url']}")
    previews = sum(isinstance(block, ImageContent) for block in result.content)
    if previews:
        _say(f"The result carried {previews} preview thumbnail(s) for the model to look at.")
    if image.get("path"):
        _say(f"Saved file: {image['path']}")
    else:
        _say(f"(Not saved: {ended(image.get('save_error') or 'saving is off (PIAPI_SAVE_OUTPUTS=0)')})")
    _say(NEXT_STEPS)
    return 0


#: How the demo ends: where to go from here.
NEXT_STEPS: Final = """
Next:
  piapi-mcp config           print the entry for Claude Desktop's claude_desktop_config.json,
                             reading pictures from your Pictures, Desktop and Downloads folders
  python scripts/build_bundle.py
                             (in a checkout, with Node.js) a one-click bundle for Claude Desktop
  claude mcp add --scope user piapi -- piapi-mcp
                             the same in Claude Code
  piapi-mcp demo --image PATH   edit one of your own pictures"""
