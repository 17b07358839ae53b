"""Start-up does only what the first ``tools/list`` needs: the rest waits for its first use."""

from __future__ import annotations

import json
import subprocess
import sys

import anyio
import httpx2
import pytest

from piapi_mcp.client import DeferredTransport


def _modules_after(code: str) -> set[str]:
    """The ``piapi_mcp`` modules a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('piapi_mcp'))))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_package_imports_none_of_its_modules_until_a_name_is_used() -> None:
    assert _modules_after("import piapi_mcp") == {"piapi_mcp", "piapi_mcp._version"}


def test_a_public_name_of_the_package_imports_its_module_on_first_use() -> None:
    loaded = _modules_after("from piapi_mcp import PiAPIClient")
    assert "piapi_mcp.client" in loaded
    assert "piapi_mcp.simulator" not in loaded and "piapi_mcp.server" not in loaded


def test_an_unknown_name_of_the_package_is_an_attribute_error() -> None:
    import piapi_mcp

    with pytest.raises(AttributeError, match="no_such_name"):
        _ = piapi_mcp.no_such_name


def test_the_command_line_module_loads_neither_the_simulator_nor_pillow() -> None:
    loaded = _modules_after("import piapi_mcp.cli")
    assert "piapi_mcp.simulator" not in loaded
    assert not any(name.startswith("piapi_mcp.simulator") for name in loaded)
    pillow = subprocess.run(
        [sys.executable, "-c", "import sys, piapi_mcp.cli, piapi_mcp.server; print('PIL' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert pillow.stdout.strip() == "False"


@pytest.mark.anyio
async def test_the_deferred_transport_is_built_once_on_the_first_request_even_when_many_start_together() -> (
    None
):
    builds: list[int] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"path": request.url.path})

    def factory() -> httpx2.AsyncBaseTransport:
        builds.append(1)
        return httpx2.MockTransport(answer)

    async with httpx2.AsyncClient(transport=DeferredTransport(factory)) as http:
        assert builds == []
        paths: list[str] = []

        async def get(n: int) -> None:
            response = await http.get(f"http://piapi.test/{n}")
            paths.append(response.json()["path"])

        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(get, n)
    assert builds == [1]
    assert sorted(paths) == sorted(f"/{n}" for n in range(20))


@pytest.mark.anyio
async def test_a_deferred_transport_never_used_closes_without_building_anything() -> None:
    builds: list[int] = []

    def factory() -> httpx2.AsyncBaseTransport:
        builds.append(1)
        raise AssertionError("built")

    async with httpx2.AsyncClient(transport=DeferredTransport(factory)):
        pass
    assert builds == []
