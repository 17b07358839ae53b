"""Discovery as resources: piapi://models lists the catalog; piapi://models/{model}/{task_type} details one entry."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import TextResourceContents

from piapi_mcp.arguments import lean_schema
from piapi_mcp.catalog import CATALOG, TaskSpec
from tests.helpers import text_of

pytestmark = pytest.mark.anyio


async def read_json(client: Client, uri: str) -> Any:
    (content,) = (await client.read_resource(uri)).contents
    assert isinstance(content, TextResourceContents) and content.mime_type == "application/json"
    return json.loads(content.text)


async def test_the_models_resource_lists_every_catalog_entry(mcp_client: Client) -> None:
    """Every spec appears once with its model, task type, summary, output kind, status and typed tool."""
    listing = await read_json(mcp_client, "piapi://models")

    expected = [
        {
            "model": spec.model,
            "task_type": spec.task_type,
            "summary": spec.summary,
            "output": spec.output,
            "status": spec.status,
            "tool": spec.tool.name if spec.tool else None,
            "uri": f"piapi://models/{spec.model}/{spec.task_type}",
        }
        for spec in CATALOG.all()
    ]
    assert listing["models"] == expected
    assert {entry["tool"] for entry in listing["models"]} >= {"kontext_edit", "flux_generate"}


@pytest.mark.parametrize("spec", CATALOG.all(), ids=lambda spec: f"{spec.model}-{spec.task_type}")
async def test_each_entry_gives_its_input_schema_and_an_example_that_run_task_completes(
    mcp_client: Client, spec: TaskSpec
) -> None:
    """The entry (read by the URI the list gives, slash and all) has the input schema and a working example."""
    entry = await read_json(mcp_client, f"piapi://models/{spec.model}/{spec.task_type}")

    assert (entry["model"], entry["task_type"], entry["status"]) == (spec.model, spec.task_type, spec.status)
    assert entry["input_schema"] == lean_schema(spec.input.model_json_schema())
    assert entry["typical_seconds"] == spec.typical_seconds
    result = await mcp_client.call_tool(
        "run_task", {"model": spec.model, "task_type": spec.task_type, "input": entry["example"]}
    )
    if spec.status != "active":  # listed, and refused before anything is sent (test_catalog_status.py)
        assert result.is_error and spec.status in text_of(result), text_of(result)
        return
    assert not result.is_error, text_of(result)
    assert (result.structured_content or {})["status"] == "completed"


async def test_an_entry_can_be_named_with_its_slash_percent_encoded(mcp_client: Client) -> None:
    """piapi://models/Qubico%2Fflux1-dev/txt2img reads the same entry as the plain form."""
    plain = await read_json(mcp_client, "piapi://models/Qubico/flux1-dev/txt2img")
    encoded = await read_json(mcp_client, "piapi://models/Qubico%2Fflux1-dev/txt2img")

    assert plain == encoded and plain["tool"] == "flux_generate"


@pytest.mark.parametrize(
    ("uri", "model", "task_type"),
    [
        ("piapi://models/Qubico/flux1-dev/upscale", "Qubico/flux1-dev", "upscale"),
        ("piapi://models/nobody/txt2img", "nobody", "txt2img"),
    ],
)
async def test_an_unknown_entry_is_a_resource_error_naming_the_pair_and_the_way_on(
    mcp_client: Client, uri: str, model: str, task_type: str
) -> None:
    """Reading an entry the catalog lacks fails with one sentence: the pair, the list, and run_task."""
    with pytest.raises(MCPError) as refused:
        await mcp_client.read_resource(uri)

    said = str(refused.value)
    assert f"'{model}'" in said and f"'{task_type}'" in said, said
    assert "read piapi://models" in said and "run_task" in said and said.count("\n") == 0


async def test_the_resources_are_announced_and_run_task_points_at_them(mcp_client: Client) -> None:
    """Hosts see the list and the entry template; run_task's description says to read them first."""
    resources = {str(resource.uri) for resource in (await mcp_client.list_resources()).resources}
    templates = {t.uri_template for t in (await mcp_client.list_resource_templates()).resource_templates}
    tools = {tool.name: tool for tool in (await mcp_client.list_tools()).tools}

    assert "piapi://models" in resources
    assert "piapi://models/{+model}/{task_type}" in templates
    description = tools["run_task"].description or ""
    assert "piapi://models first" in description and "piapi://models/{model}/{task_type}" in description
