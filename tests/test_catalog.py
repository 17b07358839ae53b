"""Every catalog spec, checked the same way: its example, the simulator running it, its recorded sample.

A spec's recorded sample (``tests/samples/<model with / as __>__<task_type>.json``) is the ``data``
of PiAPI's documented get-task answer for that pair, with its source beside it (``source``). The simulator must
answer a completed task in that shape, with files of the spec's kind behind every URL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from piapi_mcp import ManualClock, PiAPIClient, PiAPISimulator
from piapi_mcp.catalog import CATALOG, TaskSpec
from piapi_mcp.media import sniff_output
from piapi_mcp.models import parse_task
from tests.conftest import API_KEY, SIM_BASE_URL

pytestmark = pytest.mark.anyio

SAMPLES = Path(__file__).parent / "samples"
SPECS = CATALOG.all()
#: The kind of output a sniffed MIME type family stands for.
KIND_OF_MIME = {"image": "image", "video": "video", "audio": "audio", "model": "model3d"}


def spec_id(spec: TaskSpec) -> str:
    return f"{spec.model}/{spec.task_type}"


def sample_of(spec: TaskSpec) -> dict[str, Any]:
    """The recorded get-task ``data`` of the spec's pair (the file also names its source)."""
    path = SAMPLES / f"{spec.model.replace('/', '__')}__{spec.task_type}.json"
    recorded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert recorded["source"], f"{path.name} does not say where it comes from"
    data: dict[str, Any] = recorded["data"]
    return data


def client_for(http: httpx2.AsyncClient, clock: ManualClock) -> PiAPIClient:
    return PiAPIClient(http, api_key=API_KEY, base_url=SIM_BASE_URL, clock=clock, jitter=lambda: 0.5)


def urls_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from urls_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from urls_in(item)
    elif isinstance(value, str) and value.startswith(("http://", "https://")):
        yield value


def strings_in(value: Any) -> Iterator[str]:
    """Every string in a JSON value, however deep (Udio's lyrics are in ``lyrics_pairs[].text``)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, str):
        yield value


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys and types, URLs told apart from other text."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value[:1]]
    if isinstance(value, str):
        return "url" if value.startswith(("http://", "https://")) else "text"
    return type(value).__name__


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_the_example_of_every_spec_validates_against_its_input_model(spec: TaskSpec) -> None:
    validated = spec.input.model_validate(spec.example)

    sent = spec.request_input(validated)
    assert {key: sent[key] for key in spec.example} == dict(spec.example)
    assert all(sent[key] == value for key, value in spec.defaults.items() if key not in spec.example)


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
async def test_the_simulator_completes_every_spec_example_with_its_kind_of_output_in_the_documented_shape(
    spec: TaskSpec, simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    if spec.status != "active":
        pytest.skip(
            f"{spec.status}: PiAPI no longer runs it and the simulator refuses it (test_catalog_status.py)"
        )
    client = client_for(http, clock)
    sent = spec.request_input(spec.input.model_validate(spec.example))

    created = await client.create_task(spec.model, spec.task_type, sent)
    assert created.status == "pending" and created.output is None
    clock.advance(simulator.controls.queue_seconds + simulator.controls.duration)
    task = await client.get_task(created.task_id)

    assert (task.status, task.model, task.task_type) == ("completed", spec.model, spec.task_type)
    assert task.input is not None and task.input == {**task.input, **sent}  # echoed, defaults filled in
    assert task.output is not None
    assert shape(task.output) == shape(sample_of(spec)["output"])
    kinds = []
    for url in urls_in(task.output):
        assert url.startswith(f"{SIM_BASE_URL}/temp/{task.task_id}")
        answer = await http.get(url)
        assert answer.status_code == 200, url
        sniffed = sniff_output(answer.content[:64])
        assert sniffed is not None, url
        assert answer.headers["content-type"] == sniffed.mime_type
        kinds.append(KIND_OF_MIME[sniffed.mime_type.split("/")[0]])
    if spec.output == "text":
        texts = [value for value in strings_in(task.output) if value]
        assert texts and all(str(spec.example.get("image", "")) in text for text in texts)
    else:
        assert spec.output in kinds


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_the_recorded_sample_of_every_spec_parses_into_a_task(spec: TaskSpec) -> None:
    """The spec's output parser (or the generic walk) reads PiAPI's documented answer for its pair."""
    sample = sample_of(spec)

    task = parse_task(sample)

    assert (task.task_id, task.model, task.task_type) == (sample["task_id"], spec.model, spec.task_type)
    assert task.status == "completed" and task.done
    assert spec.output in {output.kind for output in task.outputs}, task.outputs
    assert task.output is not None and task.output == sample["output"]
    if spec.output == "text":
        assert any(strings_in(task.output))
    else:
        assert list(urls_in(task.output))
