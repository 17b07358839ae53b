"""README's install examples match what the commands print."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE_HOME = "/Users/you"


def _readme_config_example() -> dict[str, Any]:
    found = re.search(r"<!-- config-example:[^>]*-->\n```json\n(.*?)\n```", README, re.S)
    assert found, "README lost its checked `piapi-mcp config` example"
    example: dict[str, Any] = json.loads(found.group(1))
    return example


def _printed_config(home: Path) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-m", "piapi_mcp", "config"],
        cwd=home,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    printed: dict[str, Any] = json.loads(run.stdout)
    return printed


def test_the_readme_config_example_is_what_piapi_mcp_config_prints_for_that_home(tmp_path: Path) -> None:
    for folder in ("Pictures", "Desktop", "Downloads"):
        (tmp_path / folder).mkdir()
    printed = json.dumps(_printed_config(tmp_path), indent=2).replace(str(tmp_path), EXAMPLE_HOME)
    entry = json.loads(printed)["mcpServers"]["piapi"]
    example = _readme_config_example()["mcpServers"]
    shown = example["piapi"]

    # Only the installation's own path differs: README shows a checkout in the example home.
    assert Path(entry["command"]).parts[-2:] == Path(shown["command"]).parts[-2:] == ("bin", "piapi-mcp")
    assert {**entry, "command": None} == {**shown, "command": None}


def test_the_example_config_file_carries_the_same_settings_as_the_readme_example() -> None:
    example_file = json.loads((ROOT / "claude_config_example.json").read_text(encoding="utf-8"))
    shown = _readme_config_example()
    assert example_file["mcpServers"]["piapi"]["env"].keys() == shown["mcpServers"]["piapi"]["env"].keys()


def test_the_readme_names_claude_desktops_config_file_where_piapi_mcp_config_says() -> None:
    from piapi_mcp.desktop_config import CLAUDE_CONFIG_LOCATIONS

    for _system, location in CLAUDE_CONFIG_LOCATIONS:
        assert f"`{location}`" in README
