"""How the server words things: rounded numbers, no doubled punctuation, descriptions without indentation.

A sweep over what a client reads (tool results, progress messages, errors, resources, listings) of a
broad sample of calls, checked against patterns of what must never appear.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextResourceContents
from PIL import Image

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.media import OutputSaver
from piapi_mcp.simulator.faults import Fault
from piapi_mcp.wording import clause, ended, number, seconds, sentences, size, usd
from tests.conftest import make_server
from tests.helpers import EDIT, text_of

pytestmark = pytest.mark.anyio

#: Seconds with more than one decimal ("12.35 s").
UNROUNDED_SECONDS = re.compile(r"\d+\.\d{2,}\s*s\b")
#: A whole quantity written with ".0" ("12.0 s", "2.0 MB", "1024.0 by 768"); product names such as
#: "Kling 3.0" or "seed-audio-1.0" are names, not quantities.
TRAILING_ZERO = re.compile(
    r"(?<![\d.])\d+\.0(?:\s*(?:s|MB|KB|bytes|credits|pixels|px|seconds)\b|\s*×)|×\s*\d+\.0\b|\$\d+\.0\b"
)
#: Doubled punctuation ("..", "?.", "!.", ".;", ". ."), but not an ellipsis ("...").
DOUBLED = re.compile(r"(?<!\.)[.!?] ?[.;,](?!\.)")
#: A line of a description indented (a docstring's), or ending in spaces.
INDENTED = re.compile(r"(^|\n)[ \t]+\S|[ \t]+(\n|$)")


def _faults(text: str) -> list[str]:
    """What is wrong with a text a client reads (empty when it is fine)."""
    return [
        f"{name}: {match.group(0)!r} in {text!r}"
        for name, pattern in (("unrounded", UNROUNDED_SECONDS), ("'.0'", TRAILING_ZERO), ("doubled", DOUBLED))
        for match in pattern.finditer(text)
    ]


def _strings(value: Any) -> list[str]:
    """Every string in parsed JSON: the words of a JSON resource (its numbers are machine values)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


@dataclass
class Heard:
    """Everything the client was told: result texts, progress messages, errors, resource words."""

    texts: list[str] = field(default_factory=list)

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if message:
            self.texts.append(message)

    async def call(self, client: Client, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        result = await client.call_tool(tool, arguments, progress_callback=self.progress)
        self.texts.append(text_of(result))
        return result

    async def read(self, client: Client, uri: str) -> None:
        try:
            read = await client.read_resource(uri)
        except Exception as err:  # a resource error: its sentence is what the client reads
            self.texts.append(str(err))
            return
        for part in read.contents:
            if isinstance(part, TextResourceContents):
                self.texts.extend(_strings(json.loads(part.text)))

    def faults(self) -> list[str]:
        return [fault for text in self.texts for fault in _faults(text)]


def _png(path: Path, extra: int = 0) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(buffer, "PNG")
    path.write_bytes(buffer.getvalue() + b"\0" * extra)
    return path


@pytest.fixture
async def client(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> AsyncIterator[Client]:
    """A server over the simulator that may read ``tmp_path/pictures`` and saves outputs."""
    (tmp_path / "pictures").mkdir()
    server = make_server(
        simulator,
        clock,
        http,
        allowed_dirs=[tmp_path / "pictures"],
        outputs=OutputSaver(http, tmp_path / "outputs"),
    )
    async with Client(server, raise_exceptions=True) as session:
        yield session


async def test_every_description_a_client_lists_has_no_indentation_nor_trailing_spaces(
    client: Client,
) -> None:
    """Tools, their input and output fields, prompts and their arguments, resources: clean descriptions."""
    found: list[tuple[str, str]] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "description" and isinstance(item, str):
                    found.append((where, item))
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for item in value:
                walk(item, where)

    for tool in (await client.list_tools()).tools:
        walk(tool.model_dump(by_alias=True, exclude_none=True, mode="json"), tool.name)
    for prompt in (await client.list_prompts()).prompts:
        walk(prompt.model_dump(by_alias=True, exclude_none=True, mode="json"), f"prompt {prompt.name}")
    for resource in (await client.list_resources()).resources:
        walk(resource.model_dump(by_alias=True, exclude_none=True, mode="json"), str(resource.uri))
    for template in (await client.list_resource_templates()).resource_templates:
        walk(template.model_dump(by_alias=True, exclude_none=True, mode="json"), template.uri_template)

    assert len(found) > 50
    assert [(where, text) for where, text in found if INDENTED.search(text) or not text.strip()] == []


async def test_a_broad_sample_of_calls_says_numbers_rounded_and_no_doubled_punctuation(
    client: Client, simulator: PiAPISimulator, clock: ManualClock, tmp_path: Path
) -> None:
    """Completed, running, failed, refused, rate-limited, oversized calls; listings and resources: all clean."""
    heard = Heard()
    completed = await heard.call(client, "kontext_edit", EDIT)
    task_id = (completed.structured_content or {})["task_id"]
    assert not completed.is_error, text_of(completed)

    clock.advance(2.345)  # ages and elapsed times that are not whole seconds
    await heard.call(client, "kontext_edit", EDIT)  # the same edit again: reused, "requested … ago"
    running = await heard.call(client, "generate_video", {"prompt": "waves", "wait_seconds": 1.25})
    video_id = (running.structured_content or {})["task_id"]
    assert not (running.structured_content or {})["done"]
    await heard.call(client, "get_task", {"task_id": video_id, "wait_seconds": 2.75})

    simulator.controls.fail_tasks = True
    failed = await heard.call(client, "kontext_edit", {**EDIT, "prompt": "fail with a full stop"})
    assert failed.is_error and "(simulated)." in text_of(failed)

    def questioned(data: dict[str, Any]) -> dict[str, Any]:
        if data.get("status") == "failed":
            data["error"] = {"code": 0, "message": "Is this prompt allowed?"}
        return data

    simulator.controls.tamper = questioned
    asked = await heard.call(client, "kontext_edit", {**EDIT, "prompt": "fail with a question"})
    assert asked.is_error and "Is this prompt allowed?" in text_of(asked)
    simulator.controls.tamper = None
    simulator.controls.fail_tasks = False

    simulator.controls.faults.append(Fault(route="create", status=429, retry_after="2.345", times=99))
    limited = await heard.call(client, "kontext_edit", {**EDIT, "prompt": "rate limited"})
    assert limited.is_error and "after 2.3 s" in text_of(limited), text_of(limited)
    simulator.controls.faults.clear()
    simulator.controls.faults.append(Fault(route="create", status=400))
    refused_upstream = await heard.call(client, "kontext_edit", {**EDIT, "prompt": "refused upstream"})
    assert refused_upstream.is_error
    simulator.controls.faults.clear()

    huge = _png(tmp_path / "pictures" / "huge.png", extra=12 * 1024 * 1024)
    too_big = await heard.call(client, "kontext_edit", {**EDIT, "image": str(huge)})
    assert too_big.is_error and "12 MB" in text_of(too_big), text_of(too_big)
    for arguments in ({**EDIT, "colour": "red"}, {**EDIT, "steps": 0.5}, {"prompt": " "}):
        assert (await heard.call(client, "kontext_edit", arguments)).is_error
    bad_video = {"prompt": "waves", "model": "hailuo", "duration": 7}
    assert (await heard.call(client, "generate_video", bad_video)).is_error

    await heard.call(client, "get_account", {})
    await heard.call(client, "list_tasks", {})
    await heard.call(client, "cancel_task", {"task_id": task_id})
    for uri in ("piapi://tasks", "piapi://models", f"piapi://tasks/{task_id}", "piapi://models/x/y"):
        await heard.read(client, uri)

    assert len(heard.texts) > 20
    faults = heard.faults()
    assert faults == [], "\n".join(faults)


async def test_progress_messages_give_seconds_to_a_tenth(client: Client, clock: ManualClock) -> None:
    """The wait's budget and elapsed times read '1.2 s', never '1.25 s' nor '12.0 s'."""
    heard = Heard()
    await heard.call(client, "generate_video", {"prompt": "waves", "wait_seconds": 1.25})

    assert any("waiting up to 1.2 s" in text for text in heard.texts), heard.texts
    assert heard.faults() == []


@pytest.mark.parametrize(
    ("value", "said"),
    [(12.345678, "12.3 s"), (12.0, "12 s"), (0.04, "0 s"), (59.96, "60 s"), (1234.5, "1,234.5 s")],
)
def test_seconds_are_written_to_a_tenth_without_a_trailing_zero(value: float, said: str) -> None:
    """One helper writes every duration."""
    assert seconds(value) == said


@pytest.mark.parametrize(
    ("nbytes", "said"),
    [
        (300, "300 bytes"),
        (2048, "2 KB"),
        (2 * 1024 * 1024, "2 MB"),
        (1536 * 1024, "1.5 MB"),
        (10**7, "9.5 MB"),
    ],
)
def test_sizes_are_written_in_binary_units_without_a_trailing_zero(nbytes: int, said: str) -> None:
    """One helper writes every size."""
    assert size(nbytes) == said


@pytest.mark.parametrize(
    ("amount", "said"),
    [(0, "US$0.00"), (0.02, "US$0.02"), (0.015, "US$0.015"), (0.1, "US$0.10"), (0.123456, "US$0.123"),
     (0.0003, "US$0.0003"), (0.00001, "US$0.00001"), (1234.5, "US$1,234.50")],
)  # fmt: skip
def test_money_keeps_cents_and_small_prices(amount: float, said: str) -> None:
    """Cents from a dollar up; small per-task prices keep up to three significant digits."""
    assert usd(amount) == said


def test_joined_sentences_end_once_whatever_the_upstream_ended_with() -> None:
    """An upstream's '.', '!' or '?' is not followed by ours; a bare phrase gets its full stop."""
    assert sentences("PiAPI said no.", "No task was created") == "PiAPI said no. No task was created."
    assert sentences("Is it allowed?", "No task was created.") == "Is it allowed? No task was created."
    assert ended("Done!") == "Done!" and ended("done") == "done."
    assert clause("Bad prompt.") == "Bad prompt" and clause("Wait...") == "Wait..."
    assert number(1024.0) == "1,024" and number(2.25, 2) == "2.25"


async def test_the_demo_prints_rounded_seconds_and_clean_sentences(tmp_path: Path) -> None:
    """``piapi-mcp demo`` (sandbox): its progress lines and result read like the tools' words."""
    env = {name: os.environ[name] for name in ("PATH", "SYSTEMROOT") if name in os.environ}
    env |= {
        "HOME": str(tmp_path / "home"),
        "PIAPI_STATE_DIR": str(tmp_path / "state"),
        "PIAPI_OUTPUT_DIR": str(tmp_path / "out"),
        "PIAPI_SANDBOX_DURATION": "0",
    }
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "piapi_mcp", "demo"], env=env, cwd=tmp_path, check=False
        )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    progress = [line for line in out.splitlines() if line.startswith("  [")]
    assert progress and all(re.match(r"  \[ *\d+(\.\d)? s\] ", line) for line in progress), progress
    assert _faults(out) == []
