"""What tools/list publishes: names, annotations, schemas generated from the models, README's table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mcp import Client
from mcp.types import Tool, ToolAnnotations

import piapi_mcp
from piapi_mcp import KontextInput, TaskResult
from piapi_mcp.arguments import lean_schema
from tests.helpers import CURATED_TOOLS, TOOLS, tools_table

pytestmark = pytest.mark.anyio

README = Path(__file__).resolve().parent.parent / "README.md"


async def tools_by_name(client: Client) -> dict[str, Tool]:
    return {tool.name: tool for tool in (await client.list_tools()).tools}


async def test_the_catalogs_tools_and_the_generic_ones_are_published_with_fitting_annotations(
    mcp_client: Client,
) -> None:
    """Creating tools (curated and run_task) are not idempotent; get_task only reads; cancel_task destroys.

    Hints are read as hosts read them: a hint left out means MCP's default (readOnly false,
    destructive true, idempotent false, open world true).
    """
    tools = await tools_by_name(mcp_client)

    def hints(name: str) -> tuple[bool, bool, bool, bool]:
        given = tools[name].annotations or ToolAnnotations()
        return (
            bool(given.read_only_hint),
            given.destructive_hint is not False,
            bool(given.idempotent_hint),
            given.open_world_hint is not False,
        )

    assert set(tools) == TOOLS
    for name in [*CURATED_TOOLS, "run_task"]:
        assert hints(name) == (False, False, False, True), name
    assert hints("get_task")[0] is True
    assert hints("cancel_task") == (False, True, True, True)
    assert hints("list_tasks")[0] is True and hints("list_tasks")[3] is False  # reads this machine only
    assert all(tool.description and len(tool.description) > 80 for tool in tools.values())


async def test_kontext_edit_schema_is_the_kontext_model_plus_its_controls(mcp_client: Client) -> None:
    """Top-level properties come from KontextInput, constraints included; only the controls are added."""
    schema = (await tools_by_name(mcp_client))["kontext_edit"].input_schema
    model_schema = lean_schema(KontextInput.model_json_schema())

    assert list(schema["properties"]) == [*model_schema["properties"], "wait_seconds", "force_new"]
    for name, prop in model_schema["properties"].items():
        assert schema["properties"][name] == prop, name
    assert sorted(schema["required"]) == ["image", "prompt"]
    steps = schema["properties"]["steps"]
    assert (steps["minimum"], steps["maximum"], steps["default"]) == (1, 40, 28)
    assert schema["properties"]["prompt"]["minLength"] == 1
    assert all(
        form in schema["properties"]["image"]["description"]
        for form in ("URL", "local file", "data:", "piapi://")
    )
    # The size's default follows the input picture (issue 10): no fixed number in the schema.
    assert (schema["properties"]["seed"]["default"], schema["properties"]["height"]["default"]) == (-1, None)
    assert "$defs" not in schema


async def test_every_tool_publishes_an_output_schema_that_its_results_satisfy(mcp_client: Client) -> None:
    """get_task publishes TaskResult's full shape; the other task tools its core; list_tasks its own."""
    expected = set(TaskResult.model_json_schema()["properties"])
    tools = await tools_by_name(mcp_client)

    schemas = {name: tool.output_schema for name, tool in tools.items()}
    for name, schema in schemas.items():
        assert schema is not None, name
    full = (schemas["get_task"] or {})["properties"]
    assert set(full) == expected
    for name, schema in schemas.items():
        if name not in ("get_task", "list_tasks", "get_account"):
            core = (schema or {})["properties"]
            assert set(core) == {"task_id", "status", "done", "outputs"} and set(core) <= expected, name
            for field, shape in core.items():
                assert shape == {"type": full[field]["type"]}, field


def readme_tool_rows() -> list[str]:
    """README's tools-table rows (the lines whose first two cells are a tool and an argument), in order."""
    return [
        line.strip()
        for line in README.read_text(encoding="utf-8").splitlines()
        if re.match(r"\|\s*`\w+`\s*\|\s*`\w+`\s*\|", line.strip())
    ]


async def test_readme_tools_table_matches_what_tools_list_publishes(mcp_client: Client) -> None:
    """README's table is the one generated from tools/list (`python -m tests.helpers` prints it)."""
    assert readme_tool_rows() == tools_table((await mcp_client.list_tools()).tools)


def test_public_names_are_exported_sorted() -> None:
    """The package's public surface is pinned and sorted."""
    assert piapi_mcp.__all__ == sorted(piapi_mcp.__all__)
    assert all(hasattr(piapi_mcp, name) for name in piapi_mcp.__all__)
