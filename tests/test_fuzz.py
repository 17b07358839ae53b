"""Fuzzing every tool's arguments through the MCP client: a well-formed answer every time, never a crash.

Arguments are valid values mutated with wrong types, huge and empty strings, unicode (lone
surrogates included), nulls, extra fields, and negative or enormous numbers. Whatever arrives, the
call must return a ``CallToolResult`` (no protocol error, no exception, no hang), an error result
must carry a sentence of its own (not the SDK's bare "Error executing tool" crash notice), and the
server must keep serving: tools are still listed and a valid edit still completes. Each example
runs its own server over the in-process simulator on a ManualClock.
"""

from __future__ import annotations

import re
from typing import Any

import anyio
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.types import CallToolResult, TextContent

from piapi_mcp import ManualClock, PiAPISimulator, SimulatorControls
from piapi_mcp.catalog import CATALOG
from tests.conftest import API_KEY, SIM_BASE_URL, make_server
from tests.helpers import TOOLS as ALL_TOOLS
from tests.helpers import published_schemas

#: Every published tool, in a stable order (the curated ones come from the catalog).
TOOLS = tuple(sorted(ALL_TOOLS))
EDIT = {"prompt": "make the sky purple", "image": "https://example.com/photo.png"}
#: Real seconds one example may take: the server runs on a ManualClock, so waits cost nothing.
EXAMPLE_TIMEOUT = 15.0
FUZZ_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_BIG = 2**70
NASTY_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\t\n",
        "\x00",
        "\ud800",  # a lone surrogate: valid in a Python str, not encodable as UTF-8
        "x" * 100_000,
        "ß" * 5_000,
        "🙂" * 2_000,
        "\u202eevil",
        "../../etc/passwd",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https://example.com/" + "a" * 5_000,
        "https://example.com/ with space",
        "null",
        "-1",
        "1e309",
        "piapi://tasks/x",
    ]
)
JUNK: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-_BIG, max_value=_BIG),
    st.sampled_from([-1, 0, 1, 127, 2049, -(2**31), 2**31, 2**63, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=40),
    NASTY_STRINGS,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
#: Each tool's published input schema: the plausible values below are drawn from it, not hand-written.
SCHEMAS = published_schemas()
#: Real values the catalog knows, so that valid calls also succeed (a random string is rarely a usable image).
CATALOG_VALUES: dict[str, list[Any]] = {
    "model": sorted({spec.model for spec in CATALOG.all()}),
    "task_type": sorted({spec.task_type for spec in CATALOG.all()}),
    "input": [dict(spec.example) for spec in CATALOG.all()],
    "task_id": ["8718d5c1-aae9-4cd5-a243-84eeb1e01117"],
}
for _spec in CATALOG.tools():
    for _name, _value in _spec.example.items():
        CATALOG_VALUES.setdefault(_name, []).append(_value)


def from_schema(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that fit one property's JSON schema (types, bounds, lengths and patterns)."""
    if "anyOf" in prop:
        return st.one_of([from_schema(option) for option in prop["anyOf"]])
    kind = prop.get("type")
    if isinstance(kind, list):  # a union of types, e.g. ["string", "null"]: each with the same bounds
        return st.one_of([from_schema({**prop, "type": one}) for one in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(min_value=prop.get("minimum"), max_value=prop.get("maximum"))
    if kind == "number":
        low = prop.get("minimum", prop.get("exclusiveMinimum"))
        return st.floats(
            min_value=low,
            max_value=prop.get("maximum"),
            exclude_min="exclusiveMinimum" in prop,
            allow_nan=False,
        )
    if kind == "string":
        low, high = prop.get("minLength", 0), min(prop.get("maxLength", 80), 80)
        if "pattern" in prop:
            return st.from_regex(prop["pattern"]).filter(lambda text: low <= len(text) <= high)
        return st.text(min_size=low, max_size=high)
    if kind == "object":
        return st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8)), max_size=3)
    raise AssertionError(f"no strategy for {prop}")


def plausible(name: str, prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value of one argument: a real one the catalog knows, or any that fits the schema."""
    known = CATALOG_VALUES.get(name)
    drawn = from_schema(prop)
    return st.one_of(st.sampled_from(known), drawn) if known else drawn


#: For each tool, a plausible value for each argument, and the arguments it requires.
VALID: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    tool: {name: plausible(name, prop) for name, prop in schema["properties"].items()}
    for tool, schema in SCHEMAS.items()
}
REQUIRED = {tool: set(schema.get("required", [])) for tool, schema in SCHEMAS.items()}


@st.composite
def arguments_for(draw: st.DrawFn, tool: str) -> dict[str, Any]:
    """A tool's arguments, each kept valid, replaced by junk, or left out; sometimes with extra fields."""
    arguments: dict[str, Any] = {}
    for name, valid in VALID[tool].items():
        choice = draw(st.sampled_from(["valid", "valid", "junk", "absent"]))
        if choice == "valid" or (
            choice == "absent" and name in REQUIRED.get(tool, ()) and draw(st.booleans())
        ):
            arguments[name] = draw(valid)
        elif choice == "junk":
            arguments[name] = draw(JUNK)
    extras = draw(st.dictionaries(st.one_of(st.text(max_size=12), NASTY_STRINGS), JUNK, max_size=2))
    return {**extras, **arguments} if draw(st.booleans()) else {**arguments, **extras}


CALLS = st.lists(
    st.sampled_from(TOOLS).flatmap(lambda tool: st.tuples(st.just(tool), arguments_for(tool))),
    min_size=1,
    max_size=4,
)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def assert_well_formed(tool: str, arguments: dict[str, Any], result: CallToolResult) -> None:
    """An error carries a sentence of the tool's own; a success carries the tool's structured content."""
    assert isinstance(result, CallToolResult)
    text = text_of(result)
    assert API_KEY not in result.model_dump_json()
    if result.is_error:
        said = re.sub(rf"^Error executing tool {tool}: ", "", text)
        assert said.strip(), f"empty error for {tool}({arguments!r})"
        assert not said.startswith("Error executing tool"), f"{tool} crashed on {arguments!r}: {text!r}"
        assert "Traceback" not in said
    else:
        assert text.strip() and isinstance(result.structured_content, dict), (tool, arguments)
        if tool not in ("list_tasks", "get_account"):
            assert result.structured_content["task_id"], (tool, arguments)


async def exercise(calls: list[tuple[str, dict[str, Any]]], mode: str) -> None:
    clock = ManualClock()
    simulator = PiAPISimulator(clock, SimulatorControls(api_keys=frozenset({API_KEY})))
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(simulator.app), base_url=SIM_BASE_URL
    ) as http:
        server = make_server(simulator, clock, http)
        with anyio.fail_after(EXAMPLE_TIMEOUT):
            async with Client(server, mode=mode) as client:
                for tool, arguments in calls:
                    result = await client.call_tool(tool, arguments)
                    assert_well_formed(tool, arguments, result)
                # Still serving: the tools are listed and a valid edit goes through.
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert set(TOOLS) <= names
                after = await client.call_tool(
                    "kontext_edit", {**EDIT, "prompt": "after the fuzz", "force_new": True}
                )
                assert not after.is_error, text_of(after)
                assert (after.structured_content or {})["status"] == "completed"


@pytest.mark.parametrize("tool", TOOLS)
@FUZZ_SETTINGS
@given(data=st.data())
def test_each_tool_answers_any_arguments_with_a_result_or_a_tool_error(
    tool: str, data: st.DataObject
) -> None:
    """Fuzzed arguments of one tool: always a well-formed result or tool error, and the server goes on."""
    arguments = data.draw(arguments_for(tool), label="arguments")
    anyio.run(exercise, [(tool, arguments)], "auto")


@FUZZ_SETTINGS
@given(calls=CALLS, mode=st.sampled_from(["auto", "legacy"]))
def test_a_sequence_of_fuzzed_calls_leaves_the_server_serving(
    calls: list[tuple[str, dict[str, Any]]], mode: str
) -> None:
    """Several fuzzed calls in one session, in either protocol era, then the server still does real work."""
    if mode == "legacy":
        # The legacy era frames messages as JSON: keep to what JSON can carry.
        calls = [(tool, arguments) for tool, arguments in calls if _json_safe(arguments)]
    anyio.run(exercise, calls, mode)


def _json_safe(value: Any) -> bool:
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    if isinstance(value, str):
        return "\ud800" not in value
    if isinstance(value, dict):
        return all(_json_safe(k) and _json_safe(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_safe(item) for item in value)
    return True
