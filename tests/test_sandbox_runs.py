"""README's first command, run twice in a row: each sandbox run keeps its own ledger and durations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: Real seconds one demo run may take (two process start-ups and a task of about half a second).
RUN_TIMEOUT = 60


def test_the_sandbox_demo_succeeds_twice_in_a_row_on_one_state_folder(tmp_path: Path) -> None:
    """The second run must not reuse the first run's task, which the new simulator never had."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "PIAPI_STATE_DIR": str(tmp_path / "state"),
        "PIAPI_SANDBOX_DURATION": "0.2",
    }
    runs = [
        subprocess.run(
            [sys.executable, "-m", "piapi_mcp", "demo"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        for _ in range(2)
    ]

    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Saved file:" in run.stdout and "reuses" not in run.stdout
    state = tmp_path / "state"
    # Nothing of a sandbox run is kept where a real server (or the next sandbox run) would read it.
    assert not state.exists() or not any(path.name.endswith(".sqlite3") for path in state.iterdir())
