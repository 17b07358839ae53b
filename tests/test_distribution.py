"""What a user installing the package sees: its version, its license and metadata, its MCP Bundle."""

from __future__ import annotations

import email
import email.message
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx2
import pytest
from mcp import Client

from piapi_mcp import ManualClock, PiAPISimulator, package_version
from tests.conftest import make_server

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
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers), "PEP 639 forbids both forms"
    assert metadata["Description-Content-Type"] == "text/markdown"
    body = metadata.get_payload()
    assert isinstance(body, str)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert body.strip().splitlines()[:3] == readme.strip().splitlines()[:3]
    assert len(body) >= len(readme) * 0.9
