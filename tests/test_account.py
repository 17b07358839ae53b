"""get_account: the PiAPI account's balance, credits and plan, read from PiAPI's account endpoint, nothing spent."""

from __future__ import annotations

import json

import httpx2
import pytest
from mcp import Client

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.models import MAX_ACCOUNT_TEXT
from piapi_mcp.simulator.faults import Fault
from tests.conftest import API_KEY, make_server
from tests.helpers import EDIT, text_of

pytestmark = pytest.mark.anyio


async def test_get_account_reports_balance_and_plan_and_creates_nothing(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """The simulator's account (US$25, plan creator) comes back typed and in words; no task is made."""
    result = await mcp_client.call_tool("get_account", {})

    assert not result.is_error, text_of(result)
    data = result.structured_content or {}
    assert (data["balance_usd"], data["plan"], data["spent_24h_usd"]) == (25.0, "creator", 0.0)
    assert data["daily_budget_usd"] is None
    assert "US$25.00" in text_of(result) and "plan creator" in text_of(result)
    assert simulator.created_count == 0
    assert simulator.requests == [("GET", "/account/info")]


async def test_get_account_is_published_read_only_with_no_arguments(mcp_client: Client) -> None:
    """Hosts may call it without asking: it reads, and costs nothing."""
    tools = {tool.name: tool for tool in (await mcp_client.list_tools()).tools}
    tool = tools["get_account"]

    assert tool.annotations is not None and tool.annotations.read_only_hint is True
    assert tool.input_schema.get("properties") == {}
    assert tool.output_schema is not None and "balance_usd" in tool.output_schema["properties"]


async def test_the_balance_drops_by_what_a_completed_task_cost_and_spending_is_reported(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """After a Kontext edit (PiAPI's example consumes 200,000 units, US$0.02) the balance and the spend show it."""
    async with Client(make_server(simulator, clock, http, daily_budget_usd=5.0)) as client:
        edit = await client.call_tool("kontext_edit", EDIT)
        result = await client.call_tool("get_account", {})

    assert (edit.structured_content or {})["status"] == "completed", text_of(edit)
    data = result.structured_content or {}
    assert data["balance_usd"] == pytest.approx(24.98)
    assert (data["spent_24h_usd"], data["daily_budget_usd"]) == (pytest.approx(0.02), 5.0)
    assert "US$0.02 of its US$5.00 daily budget (US$4.98 left)" in text_of(result), text_of(result)


async def test_an_odd_or_hostile_account_answer_is_read_tolerantly_and_bounded(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """Numbers that are not numbers are dropped, texts lose control characters and are cut, the key never shows."""
    simulator.controls.account_data = {
        "name": f"me {API_KEY}",
        "plan": "pro\x1b[31m\n" + "x" * 5000,
        "equivalent_in_usd": "1e400",  # a string that is a number too large to believe
        "credit_pack_info": {"available_credits": True},
        "wallet": {"point_remain": "1234"},
    }

    result = await mcp_client.call_tool("get_account", {})

    assert not result.is_error, text_of(result)
    data = result.structured_content or {}
    assert (data["balance_usd"], data["credits"]) == (None, 1234.0)
    assert data["plan"].startswith("pro[31m xxx") and len(data["plan"]) <= MAX_ACCOUNT_TEXT
    assert "\x1b" not in data["plan"] and "\n" not in data["plan"]
    assert API_KEY not in json.dumps(data) and API_KEY not in text_of(result)


@pytest.mark.parametrize("data", [["not", "an", "object"], {"unrelated": 1}, None])
async def test_an_account_answer_with_no_figure_is_one_sentence(
    mcp_client: Client, simulator: PiAPISimulator, data: object
) -> None:
    """Whatever the upstream sends instead of an account, the caller gets one sentence, not a crash."""
    simulator.controls.account_data = data if data is not None else "nothing"

    result = await mcp_client.call_tool("get_account", {})

    message = text_of(result)
    assert result.is_error and "no balance, credits or plan" in message, message
    assert message.count(". ") == 0 and message.endswith(".")


@pytest.mark.parametrize(
    ("status", "phrase"),
    [(401, "rejected the API key"), (404, "404 for its account endpoint"), (403, "HTTP 403")],
)
async def test_account_endpoint_errors_are_one_sentence(
    mcp_client: Client, simulator: PiAPISimulator, status: int, phrase: str
) -> None:
    """A refused key, a missing endpoint, a plan that may not read it: each says what to do next."""
    simulator.controls.faults.append(Fault(route="account", status=status))

    result = await mcp_client.call_tool("get_account", {})

    assert result.is_error and phrase in text_of(result), text_of(result)


async def test_without_a_key_get_account_says_how_to_set_one(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """No key: nothing is asked of PiAPI, and the sentence names PIAPI_API_KEY."""
    async with Client(make_server(simulator, clock, http, api_key=None)) as client:
        result = await client.call_tool("get_account", {})

    assert result.is_error and "PIAPI_API_KEY" in text_of(result), text_of(result)
    assert simulator.requests == []


async def test_the_simulated_account_endpoint_is_controlled_over_http(
    simulator: PiAPISimulator, http: httpx2.AsyncClient
) -> None:
    """The sandbox's balance and plan are knobs like the others (POST /_simulator/controls)."""
    await http.post("/_simulator/controls", json={"account_balance_usd": 3.5, "account_plan": "free"})

    answer = await http.get("/account/info", headers={"X-API-Key": API_KEY})

    data = answer.json()["data"]
    assert (answer.json()["code"], data["equivalent_in_usd"], data["plan"]) == (200, 3.5, "free")
    assert (await http.get("/account/info")).status_code == 401
