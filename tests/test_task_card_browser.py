"""The MCP App task card (``piapi_mcp/ui/task.html``) in a real browser.

Headless Chromium (Debian's, never a downloaded one) driven by Playwright loads the built card in a
minimal MCP Apps host page (``tests/data/task_card/host.html``) that speaks the host side of the
postMessage JSON-RPC protocol: ``ui/initialize``, ``ui/notifications/tool-input`` and ``tool-result``,
and answers the card's ``tools/call`` requests with recorded results. Everything, media included, is
served by a loopback HTTP server the tests start; the card document gets a CSP like a host's (inline
script and style only, media from the loopback origin). Screenshots go to ``test-artifacts/``; with
``PIAPI_UPDATE_DOCS_SCREENSHOTS=1`` the image and video ones are also copied to ``docs/``.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import struct
import threading
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from PIL import Image, ImageDraw

from piapi_mcp.models import NextAction, OutputRef, TaskError, TaskResult, Usage

ROOT = Path(__file__).resolve().parent.parent
CARD = ROOT / "piapi_mcp" / "ui" / "task.html"
FIXTURES = Path(__file__).resolve().parent / "data" / "task_card"
ARTIFACTS = ROOT / "test-artifacts"
DOCS = ROOT / "docs"
CHROMIUM = Path("/usr/bin/chromium")
#: The flags that work on this project's machines (no GPU, no network beyond loopback).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The ceiling on the built card's size (it bundles the MCP Apps SDK, the MCP client and zod).
MAX_CARD_BYTES = 800_000
PROMPT = "A red fox sitting in fresh snow at dawn"


def _browser_or_skip() -> Any:
    """Playwright's sync API, or a skip (a failure under CI) when it or Chromium is missing."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None and not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"The task card browser tests cannot run under CI: {missing}.")
        pytest.skip(f"The task card browser tests need Chromium: {missing}.")
    return sync_playwright


def _png() -> bytes:
    """A small, colourful picture (a fox-ish scene) so screenshots show an image, not a blank."""
    image = Image.new("RGB", (480, 320), "#cfe3f5")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 220, 480, 320), fill="#f7f9fb")
    draw.ellipse((330, 30, 410, 110), fill="#ffd27f")
    draw.polygon([(170, 230), (240, 120), (310, 230)], fill="#d9541e")
    draw.polygon([(215, 150), (228, 105), (242, 140)], fill="#b8410f")
    draw.polygon([(240, 140), (254, 105), (266, 150)], fill="#b8410f")
    draw.ellipse((300, 200, 380, 235), fill="#e8e8e8")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _wav() -> bytes:
    """One second of a 440 Hz tone."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(8000)
            )
        )
    return buffer.getvalue()


class _Site:
    """The loopback server: the host page, the card (under a host-like CSP), the media."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {
            "/host.html": ((FIXTURES / "host.html").read_bytes(), "text/html; charset=utf-8"),
            "/task.html": (CARD.read_bytes(), "text/html; charset=utf-8"),
            "/media/fox.png": (_png(), "image/png"),
            "/media/clip.webm": ((FIXTURES / "clip.webm").read_bytes(), "video/webm"),
            "/media/song.wav": (_wav(), "audio/wav"),
            "/media/fox.glb": (b"glTF" + bytes(16), "model/gltf-binary"),
        }
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                found = site.files.get(path)
                if found is None:
                    self.send_error(404)
                    return
                body, content_type = found
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                if path == "/task.html":
                    self.send_header("Content-Security-Policy", site.card_csp)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        # What a host enforces for the card: no fetches, scripts and styles inline only, media from the
        # declared origins (here the loopback server standing in for PiAPI's file hosts).
        self.card_csp = (
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            f"img-src {self.origin} data:; media-src {self.origin}; connect-src 'none'"
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def media(self, name: str) -> str:
        return f"{self.origin}/media/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site() -> Iterator[_Site]:
    running = _Site()
    yield running
    running.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _browser_or_skip()
    assert CARD.exists(), "piapi_mcp/ui/task.html is missing: run npm ci && npm run build in apps/task-card"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Host:
    """One host page with the card in it, driven from the test."""

    def __init__(self, page: Any, site: _Site) -> None:
        self.page = page
        self.site = site
        self.frame = page.frame_locator("#app")
        #: Every URL the page and the card asked for (the page's own favicon aside).
        self.requested: list[str] = []
        page.on("request", lambda request: self.requested.append(request.url))
        #: Errors and warnings the page or the card logged (a CSP violation, a blocked form, an exception).
        self.problems: list[str] = []
        page.on(
            "console",
            lambda message: (
                self.problems.append(f"{message.type}: {message.text}")
                if message.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda error: self.problems.append(f"exception: {error}"))

    def start(self, arguments: dict[str, Any], result: dict[str, Any]) -> None:
        """Sends the tool's input and result once the card has finished the ui/initialize handshake."""
        self.page.wait_for_function("window.host && window.host.initialized()")
        self.page.evaluate("args => window.host.toolInput(args)", arguments)
        self.page.evaluate("result => window.host.toolResult(result)", result)

    def calls(self) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = self.page.evaluate("window.host.calls()")
        return calls

    def wait_for_calls(self, count: int) -> list[dict[str, Any]]:
        self.page.wait_for_function(f"window.host.calls().length >= {count}", polling=50)
        return self.calls()

    def answer(self, call_id: Any, result: dict[str, Any]) -> None:
        self.page.evaluate("([id, result]) => window.host.answer(id, result)", [call_id, result])

    def settle(self) -> None:
        """Lets the card report its size (the SDK measures on an animation frame) and the host apply it."""
        self.page.clock.run_for(50)
        height = self.frame.locator("html").evaluate(
            "html => { html.style.height = 'max-content'; const h = Math.ceil(html.getBoundingClientRect().height);"
            " html.style.height = ''; return h; }"
        )
        self.page.wait_for_function(
            f"document.getElementById('app').style.height === '{height}px'", polling=50
        )

    def screenshot(self, name: str) -> Path:
        self.settle()
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"task-card-{name}.png"
        self.page.locator("#app").screenshot(path=str(path))
        return path


@pytest.fixture
def host(browser: Any, site: _Site, request: pytest.FixtureRequest) -> Iterator[Host]:
    options: dict[str, str] = getattr(request, "param", {})
    context = browser.new_context(viewport={"width": 440, "height": 900})
    page = context.new_page()
    # Time in the page stands still unless a test moves it: progress ticks and the gap between get_task
    # calls depend on it, never on the machine's speed.
    page.clock.install()
    page.clock.pause_at(1_800_000_000_000)
    query = "&".join(f"{key}={quote(value)}" for key, value in options.items())
    running = Host(page, site)
    page.goto(f"{site.origin}/host.html?{query}")
    yield running
    context.close()
    assert running.problems == [], "the card logged errors or warnings"


def tool_result(result: TaskResult, text: str = "summary") -> dict[str, Any]:
    """The CallToolResult a task tool returns, as the host passes it on."""
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": result.model_dump(mode="json"),
        "isError": result.status == "failed",
    }


def task(status: str = "completed", **fields: Any) -> TaskResult:
    """A task result like the server's, with the fields a test cares about."""
    done = status in ("completed", "failed", "cancelled")
    values: dict[str, Any] = {
        "task_id": "task-0001",
        "model": "Qubico/flux1-dev-advanced",
        "task_type": "kontext",
        "status": status,
        "done": done,
        "outputs": [],
        "usage": None,
        "error": None,
        "created_at": None,
        "elapsed_seconds": 20.0 if done else 10.0,
        "eta_seconds": None if done else 30.0,
        "next": None
        if done
        else 'Still running on PiAPI. Call get_task with {"task_id": "task-0001", "wait_seconds": 45} to wait.',
        "simulated": False,
        "estimated_usd": 0.025,
        "cost_usd": 0.025 if status == "completed" else None,
    }
    values.update(fields)
    return TaskResult(**values)


def image_task(site: _Site, **fields: Any) -> TaskResult:
    outputs = [
        OutputRef(
            url=site.media("fox.png"),
            kind="image",
            mime_type="image/png",
            path="/home/me/piapi-outputs/task-0001-1.png",
        )
    ]
    actions = [
        NextAction(
            label="Upscale the image (2x)",
            model="Qubico/image-toolkit",
            task_type="upscale",
            input={"image": "piapi://tasks/task-0001#1", "scale": 2},
        )
    ]
    return task(outputs=outputs, next_actions=actions, usage=Usage(type="point", consume=250_000), **fields)


KONTEXT_ARGS = {"prompt": PROMPT, "image": "https://example.invalid/in.png"}


def progress(host: Host) -> int:
    value = host.frame.locator("[role=progressbar]").get_attribute("aria-valuenow")
    assert value is not None
    return int(value)


def test_a_running_task_follows_with_chained_get_task_calls_and_its_progress_bar_moves(host: Host) -> None:
    host.start(KONTEXT_ARGS, tool_result(task("processing", elapsed_seconds=10.0, eta_seconds=30.0)))

    bar = host.frame.locator("[role=progressbar]")
    bar.wait_for()
    assert host.frame.locator("h1").inner_text() == PROMPT
    assert "about 30 s left" in host.frame.locator(".eta").inner_text()
    assert host.frame.locator(".cost").inner_text() == "Listed price $0.025"
    first = progress(host)
    assert first == 25

    calls = host.wait_for_calls(1)
    assert calls[0]["name"] == "get_task"
    assert calls[0]["arguments"] == {"task_id": "task-0001", "wait_seconds": 45}
    host.screenshot("running")

    # The server waited and answers a newer state: the bar moves on, and the card asks again.
    host.page.clock.run_for(45_000)
    host.answer(calls[0]["id"], tool_result(task("processing", elapsed_seconds=55.0, eta_seconds=5.0)))
    host.frame.locator("[role=progressbar][aria-valuenow='92']").wait_for()
    assert "about 5 s left" in host.frame.locator(".eta").inner_text()
    calls = host.wait_for_calls(2)
    assert calls[1]["arguments"] == {"task_id": "task-0001", "wait_seconds": 45}

    host.answer(calls[1]["id"], tool_result(image_task(host.site)))
    host.frame.locator("img[alt]").first.wait_for()
    assert host.frame.locator("[role=progressbar]").count() == 0
    assert host.frame.locator(".badge").inner_text() == "completed"
    host.page.clock.run_for(60_000)
    assert len(host.calls()) == 2, "a finished task is not asked about again"


def test_the_progress_and_eta_keep_moving_between_answers(host: Host) -> None:
    host.start(KONTEXT_ARGS, tool_result(task("processing", elapsed_seconds=10.0, eta_seconds=30.0)))
    host.frame.locator("[role=progressbar]").wait_for()
    assert progress(host) == 25

    host.page.clock.run_for(10_000)

    assert progress(host) == 50
    assert "about 20 s left" in host.frame.locator(".eta").inner_text()


def test_a_get_task_answered_at_once_is_not_asked_again_before_the_minimum_gap(host: Host) -> None:
    host.start(KONTEXT_ARGS, tool_result(task("pending", elapsed_seconds=0.0, eta_seconds=40.0)))
    calls = host.wait_for_calls(1)

    host.answer(calls[0]["id"], tool_result(task("pending", elapsed_seconds=0.5, eta_seconds=40.0)))
    host.frame.locator(".eta").get_by_text("pending").wait_for()
    host.page.clock.run_for(2_000)
    assert len(host.calls()) == 1

    host.page.clock.run_for(1_500)
    assert len(host.wait_for_calls(2)) == 2


def test_a_completed_image_is_shown_with_the_prompt_as_alt_text_and_enlarges_on_click(host: Host) -> None:
    host.start(KONTEXT_ARGS, tool_result(image_task(host.site)))

    image = host.frame.locator(".thumb img")
    image.wait_for()
    host.frame.locator(".thumb img").evaluate("img => img.decode()")
    assert image.get_attribute("alt") == PROMPT
    assert image.evaluate("img => img.naturalWidth") == 480
    assert "Saved to /home/me/piapi-outputs/task-0001-1.png" in host.frame.locator(".saved").inner_text()
    assert host.frame.locator(".cost").inner_text() == "Cost $0.025"
    assert host.frame.locator(".facts").inner_text() == "Qubico/flux1-dev-advanced · kontext · task task-0001"
    shot = host.screenshot("image")

    host.frame.locator("button.thumb").click()
    viewer = host.frame.locator("dialog#viewer")
    assert viewer.evaluate("d => d.open") is True
    assert host.frame.locator("#viewer-image").get_attribute("alt") == PROMPT
    host.screenshot("image-enlarged")
    host.page.keyboard.press("Escape")
    assert viewer.evaluate("d => d.open") is False

    # The card loaded nothing but the host page, itself and the result's media.
    origin = host.site.origin
    assert set(host.requested) == {f"{origin}/host.html?", f"{origin}/task.html", f"{origin}/media/fox.png"}
    assert host.calls() == []
    if os.environ.get("PIAPI_UPDATE_DOCS_SCREENSHOTS"):
        shutil.copyfile(shot, DOCS / "task-card-image.png")


def test_a_completed_video_plays_in_a_video_player(host: Host) -> None:
    outputs = [OutputRef(url=host.site.media("clip.webm"), kind="video", mime_type="video/webm")]
    result = task(model="kling", task_type="video_generation", outputs=outputs, cost_usd=0.26)
    host.start({"prompt": "A paper boat drifting down a rainy street", "duration": 5}, tool_result(result))

    video = host.frame.locator("video")
    video.wait_for()
    assert video.get_attribute("controls") is not None
    assert video.get_attribute("aria-label") == "Video: A paper boat drifting down a rainy street"
    host.page.wait_for_function("() => document.querySelector('#app').contentWindow !== null")
    host.frame.locator("video").evaluate(
        "v => v.readyState >= 2 || new Promise(r => v.addEventListener('loadeddata', r, {once: true}))"
    )
    assert video.evaluate("v => v.videoWidth") == 320
    assert host.frame.locator(".cost").inner_text() == "Cost $0.260"
    shot = host.screenshot("video")
    if os.environ.get("PIAPI_UPDATE_DOCS_SCREENSHOTS"):
        shutil.copyfile(shot, DOCS / "task-card-video.png")


def test_a_completed_song_plays_in_an_audio_player_with_its_lyrics_as_text(host: Host) -> None:
    outputs = [
        OutputRef(url=host.site.media("song.wav"), kind="audio", mime_type="audio/wav"),
        OutputRef(kind="text", mime_type="text/plain", text="Snow on the rooftops\nfox in the light"),
    ]
    result = task(model="music-u", task_type="generate_music", outputs=outputs)
    host.start({"prompt": "A lullaby about a fox"}, tool_result(result))

    audio = host.frame.locator("audio")
    audio.wait_for()
    assert audio.get_attribute("controls") is not None
    audio.evaluate(
        "a => a.readyState >= 1 || new Promise(r => a.addEventListener('loadedmetadata', r, {once: true}))"
    )
    assert audio.evaluate("a => a.duration") == pytest.approx(1.0)
    assert host.frame.locator("pre.text").inner_text() == "Snow on the rooftops\nfox in the light"
    host.screenshot("audio")


def test_a_3d_model_is_a_download_link_beside_its_cover(host: Host) -> None:
    outputs = [
        OutputRef(url=host.site.media("fox.glb"), kind="model3d", mime_type="model/gltf-binary"),
        OutputRef(url=host.site.media("fox.png"), kind="image", mime_type="image/png"),
    ]
    result = task(model="Qubico/trellis", task_type="image-to-3d", outputs=outputs)
    host.start({"image": "https://example.invalid/fox.png"}, tool_result(result))

    download = host.frame.get_by_role("link", name="Download the 3D model (GLB)")
    download.wait_for()
    assert download.get_attribute("href") == host.site.media("fox.glb")
    assert (
        host.frame.locator(".model3d img").get_attribute("alt")
        == "Cover of the 3D model: PiAPI task task-0001"
    )
    assert host.frame.locator(".edit").count() == 0, "a 3D model's cover is not offered for editing"
    host.screenshot("model3d")


def test_a_failed_task_shows_piapis_message(host: Host) -> None:
    result = task("failed", error=TaskError(code=10000, message="The prompt was flagged by moderation."))
    host.start(KONTEXT_ARGS, tool_result(result))

    alert = host.frame.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text() == "PiAPI task failed (code 10000): The prompt was flagged by moderation."
    assert host.frame.locator(".badge").inner_text() == "failed"
    assert host.frame.locator(".cost").count() == 0, "a failed task with no charge shows no price"
    assert host.frame.locator("button").count() == 1  # only the (hidden) viewer's close button
    host.screenshot("failed")


def test_a_cancelled_task_says_it_was_cancelled(host: Host) -> None:
    host.start(KONTEXT_ARGS, tool_result(task("cancelled")))

    alert = host.frame.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text() == "This task was cancelled, so it produced nothing."
    assert host.frame.locator(".badge").inner_text() == "cancelled"
    assert host.calls() == []
    host.screenshot("cancelled")


def test_a_next_action_button_pressed_from_the_keyboard_calls_run_task_with_its_arguments(host: Host) -> None:
    host.start(KONTEXT_ARGS, tool_result(image_task(host.site)))
    button = host.frame.get_by_role("button", name="Upscale the image (2x)")
    button.wait_for()

    button.focus()
    host.page.keyboard.press("Enter")

    calls = host.wait_for_calls(1)
    assert calls[0]["name"] == "run_task"
    assert calls[0]["arguments"] == {
        "model": "Qubico/image-toolkit",
        "task_type": "upscale",
        "input": {"image": "piapi://tasks/task-0001#1", "scale": 2},
    }


def test_edit_again_calls_kontext_edit_on_the_output_and_follows_the_new_task(host: Host) -> None:
    host.start(KONTEXT_ARGS, tool_result(image_task(host.site)))
    field = host.frame.get_by_label("Edit again: what to change in the picture")
    field.wait_for()

    field.fill("make it night")
    host.frame.get_by_role("button", name="Edit again").click()

    calls = host.wait_for_calls(1)
    assert calls[0]["name"] == "kontext_edit"
    assert calls[0]["arguments"] == {"prompt": "make it night", "image": "piapi://tasks/task-0001#1"}
    host.answer(calls[0]["id"], tool_result(task("processing", task_id="task-0002")))
    host.frame.locator("[role=progressbar]").wait_for()
    assert host.frame.locator("h1").inner_text() == "make it night"
    calls = host.wait_for_calls(2)
    assert calls[1]["name"] == "get_task"
    assert calls[1]["arguments"] == {"task_id": "task-0002", "wait_seconds": 45}
    context_updates = host.page.evaluate(
        "window.host.log().filter(m => m.method === 'ui/update-model-context').length"
    )
    assert context_updates == 1


@pytest.mark.parametrize(
    "host",
    [{"theme": "dark", "variables": json.dumps({"--color-background-primary": "rgb(10, 20, 30)"})}],
    indirect=True,
)
def test_the_card_takes_the_hosts_theme_and_style_variables(host: Host) -> None:
    host.start(KONTEXT_ARGS, tool_result(task("failed", error=TaskError(message="Out of credits."))))
    host.frame.get_by_role("alert").wait_for()

    assert host.frame.locator("html").get_attribute("data-theme") == "dark"
    assert (
        host.frame.locator("body").evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(10, 20, 30)"
    )
    text = host.frame.locator("body").evaluate("b => getComputedStyle(b).color")
    assert text == "rgb(244, 244, 245)"  # the dark fallback where the host gives no text colour
    host.screenshot("dark")


def test_the_built_card_is_one_self_contained_file_under_800_kb() -> None:
    html = CARD.read_text(encoding="utf-8")

    assert len(html.encode()) < MAX_CARD_BYTES
    assert "<script" in html and " src=" not in html.split("<body>", 1)[0].replace("<script type", "")
    assert "<link" not in html


def test_a_get_task_error_is_shown_and_the_card_stops_following(host: Host) -> None:
    host.start(KONTEXT_ARGS, tool_result(task("processing")))
    calls = host.wait_for_calls(1)
    said = "Task task-0001 is not known to PiAPI for this API key; check the task id."

    host.answer(calls[0]["id"], {"content": [{"type": "text", "text": said}], "isError": True})

    alert = host.frame.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text() == said
    host.page.clock.run_for(60_000)
    assert len(host.calls()) == 1
