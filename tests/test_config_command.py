"""``piapi-mcp config``: a pasteable ``mcpServers`` entry with the image folders, ``--sandbox`` on request,
the right executable on Windows, and the ``uvx`` form instead of a path in uv's temporary cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from piapi_mcp.config import parse_allowed_dirs
from piapi_mcp.desktop_config import Installation, desktop_entry, install_source

#: Real seconds one ``piapi-mcp config`` may take (a process start-up).
RUN_TIMEOUT = 60


def _where(
    platform: str, executable: str, home: str, present: Iterable[str] = (), **kwargs: Any
) -> Installation:
    """An installation on ``platform`` where only the ``present`` paths exist."""
    existing = set(present)
    return Installation(
        platform=platform,
        executable=executable,
        home=home,
        cwd=kwargs.pop("cwd", home),
        exists=existing.__contains__,
        **kwargs,
    )


def _entry(where: Installation, **kwargs: Any) -> dict[str, Any]:
    entry: dict[str, Any] = desktop_entry(where, **kwargs).document["mcpServers"]["piapi"]
    return entry


def _config(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "USERPROFILE": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "piapi_mcp", "config", *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def test_the_printed_config_is_pure_json_with_the_home_picture_folders_that_exist(tmp_path: Path) -> None:
    for name in ("Pictures", "Downloads"):
        (tmp_path / name).mkdir()

    run = _config(tmp_path)

    assert run.returncode == 0, run.stderr
    entry = json.loads(run.stdout)["mcpServers"]["piapi"]
    assert Path(entry["command"]).is_absolute() and Path(entry["command"]).name == "piapi-mcp"
    assert entry["args"] == []
    assert entry["env"]["PIAPI_API_KEY"] == "paste-your-PiAPI-key-here"
    # Read back exactly as the server reads it (config.py's PIAPI_ALLOWED_DIRS).
    assert parse_allowed_dirs(entry["env"]["PIAPI_ALLOWED_DIRS"]) == [
        tmp_path / "Pictures",
        tmp_path / "Downloads",
    ]
    assert "--allowed-dir" in run.stderr
    assert "~/Library/Application Support/Claude/claude_desktop_config.json" in run.stderr
    assert r"%APPDATA%\Claude\claude_desktop_config.json" in run.stderr


def test_sandbox_adds_the_servers_flag_and_needs_no_key(tmp_path: Path) -> None:
    run = _config(tmp_path, "--sandbox")

    assert run.returncode == 0, run.stderr
    entry = json.loads(run.stdout)["mcpServers"]["piapi"]
    assert entry["args"] == ["--sandbox"] and "PIAPI_API_KEY" not in entry["env"]


def test_allowed_dir_flags_replace_the_defaults_as_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "Pictures").mkdir()
    (tmp_path / "scans").mkdir()

    run = _config(tmp_path, "--allowed-dir", "scans", "--allowed-dir", str(tmp_path / "not-yet"))

    assert run.returncode == 0, run.stderr
    dirs = json.loads(run.stdout)["mcpServers"]["piapi"]["env"]["PIAPI_ALLOWED_DIRS"]
    assert dirs == os.pathsep.join([str(tmp_path / "scans"), str(tmp_path / "not-yet")])
    assert "do not exist (yet)" in run.stderr and str(tmp_path / "not-yet") in run.stderr


def test_with_none_of_the_default_folders_present_all_three_are_listed() -> None:
    entry = _entry(_where("linux", "/venv/bin/python", "/home/a", ["/venv/bin/piapi-mcp"]))

    assert entry["command"] == "/venv/bin/piapi-mcp"
    assert entry["env"]["PIAPI_ALLOWED_DIRS"] == "/home/a/Pictures:/home/a/Desktop:/home/a/Downloads"


def test_on_windows_a_venv_gets_its_scripts_exe_and_semicolon_separated_folders() -> None:
    home = r"C:\Users\Ann"
    where = _where(
        "win32",
        r"C:\Users\Ann\venvs\piapi\Scripts\python.exe",
        home,
        [r"C:\Users\Ann\venvs\piapi\Scripts\piapi-mcp.exe", rf"{home}\Pictures", rf"{home}\Desktop"],
    )

    entry = _entry(where)

    assert entry["command"] == r"C:\Users\Ann\venvs\piapi\Scripts\piapi-mcp.exe"
    assert entry["env"]["PIAPI_ALLOWED_DIRS"] == r"C:\Users\Ann\Pictures;C:\Users\Ann\Desktop"


def test_on_windows_a_base_install_gets_the_exe_in_its_scripts_folder() -> None:
    where = _where(
        "win32",
        r"C:\Python311\python.exe",
        r"C:\Users\Ann",
        [r"C:\Python311\Scripts\piapi-mcp.exe"],
    )

    assert _entry(where)["command"] == r"C:\Python311\Scripts\piapi-mcp.exe"


def test_on_windows_allowed_dirs_are_made_absolute_from_home_and_the_working_folder() -> None:
    where = _where("win32", r"C:\venv\Scripts\python.exe", r"C:\Users\Ann", cwd=r"D:\work")

    entry = _entry(where, allowed_dirs=[r"~\Scans", "photos", r"E:\Shared"])

    assert entry["env"]["PIAPI_ALLOWED_DIRS"] == r"C:\Users\Ann\Scans;D:\work\photos;E:\Shared"


def test_without_the_script_beside_python_the_one_on_path_is_used() -> None:
    where = _where("darwin", "/usr/bin/python3", "/Users/a", which={"piapi-mcp": "/opt/bin/piapi-mcp"}.get)

    assert _entry(where)["command"] == "/opt/bin/piapi-mcp"


@pytest.mark.parametrize(
    ("platform", "executable", "home", "env"),
    [
        ("linux", "/home/a/.cache/uv/archive-v0/Xy12/bin/python", "/home/a", {}),
        ("darwin", "/Users/a/.cache/uv/archive-v0/Xy12/bin/python3", "/Users/a", {}),
        ("linux", "/big/cache/archive-v0/Xy12/bin/python", "/home/a", {"UV_CACHE_DIR": "/big/cache"}),
        ("linux", "/xdg/uv/builds-v0/.tmp/bin/python", "/home/a", {"XDG_CACHE_HOME": "/xdg"}),
        ("linux", "/somewhere/else/uv-cache/archive-v0/Q/bin/python", "/home/a", {}),
        (
            "win32",
            r"C:\Users\Ann\AppData\Local\uv\cache\archive-v0\Xy12\Scripts\python.exe",
            r"C:\Users\Ann",
            {},
        ),
        (
            "win32",
            r"D:\Local\UV\Cache\archive-v0\Xy12\Scripts\python.exe",
            r"C:\Users\Ann",
            {"LOCALAPPDATA": r"D:\Local"},
        ),
    ],
)
def test_a_path_in_uvs_temporary_cache_is_replaced_by_the_uvx_form(
    platform: str, executable: str, home: str, env: dict[str, str]
) -> None:
    script = executable.rsplit("python", 1)[0] + ("piapi-mcp.exe" if platform == "win32" else "piapi-mcp")
    where = _where(platform, executable, home, [script], env=env, which={"uvx": "/usr/local/bin/uvx"}.get)

    result = desktop_entry(where, sandbox=True)

    entry = result.document["mcpServers"]["piapi"]
    assert entry["command"] == "/usr/local/bin/uvx"
    assert entry["args"] == ["--from", "piapi-mcp", "piapi-mcp", "--sandbox"]
    assert not any("archive-v0" in arg or "cache" in arg.lower() for arg in entry["args"])
    assert any("uv's cache" in note and "uvx" in note for note in result.notes)


def test_a_persistent_uv_tool_install_keeps_its_absolute_path() -> None:
    executable = "/home/a/.local/share/uv/tools/piapi-mcp/bin/python"
    where = _where("linux", executable, "/home/a", ["/home/a/.local/share/uv/tools/piapi-mcp/bin/piapi-mcp"])

    assert _entry(where)["command"] == "/home/a/.local/share/uv/tools/piapi-mcp/bin/piapi-mcp"


def test_the_uvx_form_installs_from_the_git_url_the_cache_was_made_from() -> None:
    direct_url = json.dumps(
        {
            "url": "https://github.com/example/piapi-mcp.git",
            "vcs_info": {"vcs": "git", "commit_id": "ab12", "requested_revision": "v0.2.0"},
        }
    )
    where = _where("linux", "/home/a/.cache/uv/archive-v0/X/bin/python", "/home/a", direct_url=direct_url)

    entry = _entry(where)

    assert entry["command"] == "uvx"
    assert entry["args"] == ["--from", "git+https://github.com/example/piapi-mcp.git@v0.2.0", "piapi-mcp"]
    assert entry["env"]["PIAPI_API_KEY"] == "paste-your-PiAPI-key-here"


@pytest.mark.parametrize(
    ("direct_url", "flavour_platform", "expected"),
    [
        (
            '{"url": "file:///home/a/src/piapi-mcp", "dir_info": {"editable": true}}',
            "linux",
            "/home/a/src/piapi-mcp",
        ),
        (
            '{"url": "file:///C:/Users/Ann/src/piapi%20mcp", "dir_info": {}}',
            "win32",
            r"C:\Users\Ann\src\piapi mcp",
        ),
        (
            '{"url": "git+https://example.com/p.git", "vcs_info": {"vcs": "git", "commit_id": "1"}}',
            "linux",
            "git+https://example.com/p.git",
        ),
        (
            '{"url": "https://example.com/piapi_mcp-0.1.0.tar.gz", "archive_info": {}}',
            "linux",
            "https://example.com/piapi_mcp-0.1.0.tar.gz",
        ),
        (None, "linux", "piapi-mcp"),
        ("not json", "linux", "piapi-mcp"),
    ],
)
def test_the_uvx_source_comes_from_pep_610_direct_url(
    direct_url: str | None, flavour_platform: str, expected: str
) -> None:
    flavour = _where(flavour_platform, "/x", "/h").flavour
    assert install_source(direct_url, flavour) == expected
