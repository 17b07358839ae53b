"""The generated docs: ``docs/models.md`` is what the catalog says now, and the sandbox examples run.

``docs/models.md`` is written by ``python -m piapi_mcp.catalog``; a catalog change without the page
regenerated fails here. ``docs/examples.md`` holds the agent examples README shows (a video from a
photo, a song, a 3D model); each of its calls is run exactly as written against the simulator the
sandbox uses, and must complete with its kind of output.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.catalog import CATALOG
from piapi_mcp.catalog._docs import models_markdown
from tests.helpers import saving_client, text_of

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).resolve().parent.parent / "docs"
MODELS_PAGE = DOCS / "models.md"
EXAMPLES_PAGE = DOCS.parent / "README.md"
#: The README section holding the examples.
EXAMPLES_HEADING = "## Three things to ask, in the sandbox"
#: One call of an example: ``tool_name {json arguments}`` on its own line in a ``text`` code block.
CALL = re.compile(r"^(\w+) (\{.*\})$", re.MULTILINE)
#: The kind of output each example is there for, in the page's order.
EXPECTED_KINDS = ["video", "audio", "model3d"]
#: Real seconds one sandbox process may take to start and print the page.
RUN_TIMEOUT = 60


def example_calls() -> list[tuple[str, dict[str, Any]]]:
    """The calls written in README's examples section, in order."""
    page = EXAMPLES_PAGE.read_text(encoding="utf-8")
    section = page.split(EXAMPLES_HEADING, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```text\n(.*?)```", section, re.DOTALL)
    return [(tool, json.loads(arguments)) for block in blocks for tool, arguments in CALL.findall(block)]


def test_docs_models_md_is_what_the_catalog_says_now() -> None:
    """Regenerate it with: python -m piapi_mcp.catalog > docs/models.md."""
    assert MODELS_PAGE.read_text(encoding="utf-8") == models_markdown(CATALOG.all())


def test_docs_models_md_lists_every_entry_with_its_status_price_and_typed_tool() -> None:
    page = MODELS_PAGE.read_text(encoding="utf-8")
    rows = [line for line in page.splitlines() if line.startswith("| `")]

    assert len(rows) == len(CATALOG.all())
    for spec in CATALOG.all():
        (row,) = [row for row in rows if row.startswith(f"| `{spec.model}` | `{spec.task_type}` |")]
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert cells[3:5] == [spec.output, spec.status], row
        assert cells[5] == ("—" if spec.price_usd is None else f"{spec.price_usd:g}"), row
        assert cells[6] == (f"`{spec.tool.name}`" if spec.tool else "—"), row


def test_python_m_piapi_mcp_catalog_prints_the_page(tmp_path: Path) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "piapi_mcp.catalog"],
        capture_output=True,
        check=True,
        cwd=tmp_path,
        timeout=RUN_TIMEOUT,
    )

    assert printed.stdout.decode("utf-8") == models_markdown(CATALOG.all())


async def test_the_three_agent_examples_complete_in_the_sandbox_with_a_video_a_song_and_a_3d_model(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    """Each call of README's examples, as written, completes against the simulator with its output saved."""
    calls = example_calls()
    assert len(calls) == len(EXPECTED_KINDS), calls

    async with saving_client(simulator, clock, http, tmp_path, simulated=True) as client:
        results = [await client.call_tool(tool, arguments) for tool, arguments in calls]

    for (tool, _), result, kind in zip(calls, results, EXPECTED_KINDS, strict=True):
        assert not result.is_error, (tool, text_of(result))
        data = result.structured_content or {}
        assert data["status"] == "completed" and data["simulated"] is True, (tool, data)
        files = [item for item in data["outputs"] if item["kind"] == kind]
        assert files and files[0]["path"] and Path(files[0]["path"]).is_file(), (tool, data["outputs"])
        assert "no credits were used" in text_of(result)
