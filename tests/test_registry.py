"""server.json, the entry for the official MCP Registry: valid against its schema, generated, current."""

from __future__ import annotations

import importlib.util
import io
import json
import tomllib
from contextlib import redirect_stdout
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs; the test only validates
import pytest

from piapi_mcp import package_version
from piapi_mcp._version import __version__
from piapi_mcp.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).resolve().parent / "data" / "registry" / "server.schema.json"


def _script() -> ModuleType:
    """scripts/build_server_json.py, imported by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "build_server_json", ROOT / "scripts" / "build_server_json.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _committed() -> dict[str, Any]:
    entry: dict[str, Any] = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
    return entry


def _validator() -> Any:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return validator


def test_server_json_is_valid_against_the_registry_schema() -> None:
    """The committed file passes the vendored registry schema, format checks included."""
    entry = _committed()
    _validator().validate(entry)
    assert entry["$schema"] == json.loads(SCHEMA.read_text(encoding="utf-8"))["$id"]


def test_the_vendored_schema_refuses_what_the_registry_refuses() -> None:
    """The schema is really checked: a name without a namespace and a 'latest' version are refused."""
    validator = _validator()
    for broken in (
        _committed() | {"name": "piapi-mcp"},
        _committed() | {"packages": [_committed()["packages"][0] | {"version": "latest"}]},
        {key: value for key, value in _committed().items() if key != "version"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)


def test_server_json_versions_are_the_package_version() -> None:
    """The entry's version and its package's are the version pyproject builds and serverInfo reports."""
    entry = _committed()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert entry["version"] == __version__ == package_version()
    assert [package["version"] for package in entry["packages"]] == [__version__]
    assert "version" in pyproject["dynamic"]


def test_server_json_is_what_the_script_generates() -> None:
    """The committed file is exactly the script's output: run scripts/build_server_json.py --write."""
    assert (ROOT / "server.json").read_text(encoding="utf-8") == _script().rendered(), (
        "server.json is stale: run python scripts/build_server_json.py --write"
    )


def test_the_package_is_the_pypi_stdio_server_with_its_settings() -> None:
    """One PyPI package, piapi-mcp over stdio; the key first, required and secret; every stdio setting listed."""
    entry = _committed()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (package,) = entry["packages"]
    assert (package["registryType"], package["identifier"], package["transport"]) == (
        "pypi",
        pyproject["name"],
        {"type": "stdio"},
    )
    assert entry["description"] == pyproject["description"]
    variables = package["environmentVariables"]
    assert variables[0] == variables[0] | {"name": "PIAPI_API_KEY", "isRequired": True, "isSecret": True}
    assert not any(variable["isSecret"] or variable["isRequired"] for variable in variables[1:])
    listed = [variable["name"] for variable in variables]
    http_only = _script().HTTP_ONLY_SETTINGS
    assert listed == [name for name, _ in SETTINGS if name not in http_only]
    assert all(variable["description"].endswith(".") for variable in variables)


def test_the_namespace_owner_is_one_flag() -> None:
    """The name is io.github.<owner>/piapi-mcp; --owner changes the owner and nothing else."""
    script = _script()
    assert _committed()["name"] == f"io.github.{script.OWNER}/piapi-mcp"
    out = io.StringIO()
    with redirect_stdout(out):
        assert script.main(["--owner", "someone"]) == 0
    printed = json.loads(out.getvalue())
    assert printed["name"] == "io.github.someone/piapi-mcp"
    assert printed | {"name": _committed()["name"]} == _committed()
