"""What a user installing the package sees: its version, its license and metadata, its MCP Bundle."""

from __future__ import annotations

import email
import email.message
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import TextContent

from piapi_mcp import ManualClock, PiAPISimulator, package_version
from piapi_mcp.config import DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS, default_output_dir
from piapi_mcp.desktop_config import DEFAULT_IMAGE_FOLDERS
from tests.conftest import API_KEY, make_server

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_flag_prints_the_installed_version() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "piapi_mcp", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"piapi-mcp {package_version()}"
    assert package_version() and package_version()[0].isdigit()


@pytest.mark.anyio
async def test_the_server_reports_its_version_in_server_info(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    server = make_server(simulator, clock, http)

    async with Client(server, raise_exceptions=True) as client:
        info = client.server_info

    assert info is not None
    assert info.name == "piapi-mcp"
    assert info.version == package_version()


@pytest.fixture(scope="module")
def wheel_metadata(tmp_path_factory: pytest.TempPathFactory) -> tuple[email.message.Message, set[str]]:
    """The METADATA of a wheel built offline from a copy of this source tree, and the wheel's file names."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "piapi_mcp", source / "piapi_mcp", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"),
            *("-w", str(tmp_path / "dist"), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("piapi_mcp-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = (name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(metadata_name))
    return metadata, names


@pytest.mark.timeout(120)
def test_the_built_wheel_carries_the_mit_license_expression_and_file(
    wheel_metadata: tuple[email.message.Message, set[str]],
) -> None:
    metadata, names = wheel_metadata

    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")


@pytest.mark.timeout(120)
def test_the_built_wheel_has_classifiers_the_python_requirement_and_the_readme(
    wheel_metadata: tuple[email.message.Message, set[str]],
) -> None:
    metadata, _ = wheel_metadata
    classifiers = metadata.get_all("Classifier") or []

    assert metadata["Version"] == package_version()
    assert metadata["Requires-Python"] == ">=3.11"
    assert "Typing :: Typed" in classifiers
    assert any(
        url.startswith("PiAPI documentation, https://") for url in metadata.get_all("Project-URL") or []
    )
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers), "PEP 639 forbids both forms"
    assert metadata["Description-Content-Type"] == "text/markdown"
    body = metadata.get_payload()
    assert isinstance(body, str)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert body.strip().splitlines()[:3] == readme.strip().splitlines()[:3]
    assert len(body) >= len(readme) * 0.9


# --- the MCP Bundle -----------------------------------------------------------------------------

MANIFEST = ROOT / "bundle" / "manifest.json"
NPX = shutil.which("npx")
needs_npx = pytest.mark.skipif(NPX is None, reason="npx (Node.js) is not installed; CI has it")


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return loaded


def substituted(value: Any, variables: dict[str, str | list[str]]) -> Any:
    """``value`` with ``${...}`` replaced the way mcpb's host does: a list setting expands only as a whole arg."""
    if isinstance(value, str):
        for key, replacement in variables.items():
            if isinstance(replacement, str):
                value = value.replace("${" + key + "}", replacement)
        return value
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            whole = re.fullmatch(r"\$\{(user_config\.[^}]+)\}", item) if isinstance(item, str) else None
            if whole and whole.group(1) in variables:
                replacement = variables[whole.group(1)]
                out.extend(replacement if isinstance(replacement, list) else [replacement])
            else:
                out.append(substituted(item, variables))
        return out
    if isinstance(value, dict):
        return {key: substituted(item, variables) for key, item in value.items()}
    return value


@needs_npx
@pytest.mark.timeout(240)
def test_the_bundle_manifest_passes_the_official_mcpb_validator() -> None:
    checked = subprocess.run(
        [str(NPX), "-y", "@anthropic-ai/mcpb", "validate", str(MANIFEST)],
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "validation passes" in checked.stdout


@pytest.mark.anyio
async def test_the_bundle_manifest_lists_exactly_the_tools_the_server_answers(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    async with Client(make_server(simulator, clock, http), raise_exceptions=True) as client:
        tools = (await client.list_tools()).tools

    listed = [{"name": tool.name, "description": tool.description} for tool in tools]
    assert manifest()["tools"] == listed, "run: python scripts/build_bundle.py --write-manifest"


def test_the_bundle_manifest_follows_the_package_and_maps_every_setting_to_the_server() -> None:
    bundle = manifest()
    settings = bundle["user_config"]
    config = bundle["server"]["mcp_config"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    assert bundle["manifest_version"] == "0.4"
    assert bundle["version"] == package_version()
    assert bundle["server"]["type"] == "uv" and config["command"] == "uv"
    assert bundle["compatibility"]["runtimes"]["python"] == project["requires-python"]
    assert settings["api_key"]["type"] == "string" and settings["api_key"]["sensitive"] is True
    assert settings["allowed_dirs"]["type"] == "directory" and settings["allowed_dirs"]["multiple"] is True
    # The same default folders as `piapi-mcp config` prints.
    assert settings["allowed_dirs"]["default"] == [f"${{HOME}}/{name}" for name in DEFAULT_IMAGE_FOLDERS]
    assert DEFAULT_IMAGE_FOLDERS == ("Pictures", "Desktop", "Downloads")
    assert settings["output_dir"]["type"] == "directory"
    assert (
        settings["output_dir"]["default"]
        == "${HOME}/" + default_output_dir().relative_to(Path.home()).as_posix()
    )
    assert (settings["wait_seconds"]["default"], settings["wait_seconds"]["max"]) == (
        DEFAULT_WAIT_SECONDS,
        MAX_WAIT_SECONDS,
    )
    assert config["env"] == {
        "PIAPI_API_KEY": "${user_config.api_key}",
        "PIAPI_OUTPUT_DIR": "${user_config.output_dir}",
        "PIAPI_WAIT_SECONDS": "${user_config.wait_seconds}",
    }
    assert config["args"][-1] == "${user_config.allowed_dirs}"


@needs_npx
@pytest.mark.anyio
@pytest.mark.timeout(240)
async def test_the_packed_bundle_started_as_its_manifest_says_answers_tools_list(tmp_path: Path) -> None:
    packed = tmp_path / "piapi-mcp.mcpb"
    built = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_bundle.py"), "--output", str(packed)],
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    unpacked = tmp_path / "installed"
    with zipfile.ZipFile(packed) as archive:
        archive.extractall(unpacked)
    bundle = json.loads((unpacked / "manifest.json").read_text(encoding="utf-8"))
    home = tmp_path / "home"
    (home / "Pictures").mkdir(parents=True)
    variables: dict[str, str | list[str]] = {"__dirname": str(unpacked), "HOME": str(home)}
    for key, setting in bundle["user_config"].items():
        if "default" in setting:
            default = setting["default"]
            variables[f"user_config.{key}"] = (
                [str(v) for v in default] if isinstance(default, list) else str(default)
            )
    variables["user_config.api_key"] = API_KEY
    config = substituted(bundle["server"]["mcp_config"], variables)
    # Claude Desktop runs `uv run --directory <bundle> <entry point> ...`; uv installs the bundle's own
    # project, which PYTHONPATH stands in for here, with this venv's python.
    assert config["args"][:4] == ["run", "--directory", str(unpacked), bundle["server"]["entry_point"]]
    env = {
        **config["env"],
        "HOME": str(home),
        "USERPROFILE": str(home),
        "PYTHONPATH": str(unpacked),
        "PIAPI_STATE_DIR": str(tmp_path / "state"),
        # nothing here may reach the network: a refused loopback port, never a name to resolve
        "PIAPI_BASE_URL": "http://127.0.0.1:9",
        "PIAPI_UPLOAD_URL": "http://127.0.0.1:9/upload",
        **{name: os.environ[name] for name in ("SYSTEMROOT", "PATH") if name in os.environ},
    }
    params = StdioServerParameters(
        command=sys.executable, args=config["args"][3:], env=env, cwd=str(unpacked)
    )

    with anyio.fail_after(30):
        async with Client(params) as client:
            tools = (await client.list_tools()).tools
            info = client.server_info
            outside = await client.call_tool(
                "kontext_edit", {"prompt": "purple sky", "image": str(tmp_path / "x.png")}
            )

    assert [tool.name for tool in tools] == [tool["name"] for tool in bundle["tools"]]
    assert info is not None and info.version == bundle["version"]
    # the default folders, given verbatim as ${HOME}/..., reached the server expanded
    refusal = "\n".join(block.text for block in outside.content if isinstance(block, TextContent))
    assert outside.is_error
    for folder in ("Pictures", "Desktop", "Downloads"):
        assert str(home / folder) in refusal, refusal
    assert API_KEY not in refusal
