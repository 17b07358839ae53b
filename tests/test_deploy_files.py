"""The deployment example parses and hangs together: compose file, HAProxy config, image, env, script.

No containers run here: the compose file is read with a small parser for the YAML subset it uses
(maps, lists, anchors and aliases, JSON flow lists), and HAProxy checks its config (``haproxy -c``,
skipped where HAProxy is not installed) with loopback addresses only, so nothing is resolved.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def parse_yaml_subset(text: str) -> Any:
    """Parse block maps/lists, ``&anchor``/``*alias``, quoted scalars and JSON flow lists; raise on the rest."""
    lines: list[tuple[int, str]] = []
    for raw in text.splitlines():
        if "\t" in raw:
            raise ValueError(f"tab in {raw!r}")
        stripped = re.sub(r"\s+#.*$", "", raw) if not raw.lstrip().startswith("#") else ""
        if stripped.strip():
            lines.append((len(stripped) - len(stripped.lstrip()), stripped.strip()))
    anchors: dict[str, Any] = {}

    def scalar(value: str) -> Any:
        if value.startswith("*"):
            return anchors[value[1:]]
        if value.startswith("["):
            return json.loads(value)
        if value[:1] in "\"'":
            if value[-1] != value[0]:
                raise ValueError(f"unclosed quote in {value!r}")
            return value[1:-1]
        return value

    def block(start: int, indent: int) -> tuple[Any, int]:
        is_list = lines[start][1].startswith("- ")
        result: Any = [] if is_list else {}
        index = start
        while index < len(lines) and lines[index][0] >= indent:
            depth, content = lines[index]
            if depth != indent:
                raise ValueError(f"bad indentation at {content!r}")
            if is_list:
                if not content.startswith("- "):
                    raise ValueError(f"list item expected at {content!r}")
                result.append(scalar(content[2:].strip()))
                index += 1
                continue
            key, sep, value = content.partition(":")
            if not sep or key in result:
                raise ValueError(f"not a new key: {content!r}")
            value = value.strip()
            anchor = None
            if value.startswith("&"):
                anchor, _, value = value[1:].partition(" ")
            if value:
                result[key] = scalar(value)
                index += 1
            elif index + 1 < len(lines) and lines[index + 1][0] > indent:
                result[key], index = block(index + 1, lines[index + 1][0])
            else:  # an empty value: null
                result[key] = None
                index += 1
            if anchor:
                anchors[anchor] = result[key]
        return result, index

    parsed, end = block(0, 0)
    if end != len(lines):
        raise ValueError(f"unparsed from {lines[end][1]!r}")
    return parsed


def test_the_compose_file_wires_postgres_three_stateless_replicas_and_haproxy_from_the_env_file() -> None:
    compose = parse_yaml_subset((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "replica1", "replica2", "replica3", "haproxy"}
    for name in ("replica1", "replica2", "replica3"):
        replica = services[name]
        assert (DEPLOY.parent / replica["build"]["dockerfile"]).is_file()
        assert replica["env_file"] == ".env"
        assert replica["environment"]["PIAPI_LEDGER_URL"].startswith("postgresql://piapi:")
        assert "@postgres:5432/piapi" in replica["environment"]["PIAPI_LEDGER_URL"]
        assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
    balancer = services["haproxy"]
    assert {balancer["environment"][f"PIAPI_REPLICA_{n}"] for n in (1, 2, 3)} == {
        f"replica{n}:8000" for n in (1, 2, 3)
    }
    mounted = balancer["volumes"][0].split(":")[0]
    assert (DEPLOY / mounted).resolve() == DEPLOY / "haproxy.cfg"
    # Every variable the compose file reads is explained in the env template the user copies to .env.
    used = set(re.findall(r"\$\{(\w+)", (DEPLOY / "compose.yaml").read_text()))
    documented = set(re.findall(r"^(\w+)=", (DEPLOY / "env.example").read_text(), re.MULTILINE))
    assert used <= documented
    assert {"PIAPI_API_KEY", "PIAPI_MCP_AUTH_TOKEN", "PIAPI_WEBHOOK_SECRET", "PIAPI_PUBLIC_URL"} <= documented


def test_the_replica_image_serves_stateless_streamable_http_on_all_interfaces() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    command = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert command[:2] == ["--transport", "streamable-http"]
    assert "--stateless" in command
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert '"/src[postgres]"' in dockerfile


def test_the_yaml_subset_parser_refuses_a_misindented_file() -> None:
    with pytest.raises(ValueError, match="indentation"):
        parse_yaml_subset("services:\n  a:\n    image: x\n   b: y\n")


def test_haproxy_accepts_the_config_with_its_defaults_and_with_given_addresses() -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("HAProxy is not installed (Debian: apt-get install haproxy); its config is not checked.")
    config = str(DEPLOY / "haproxy.cfg")
    given = {"PIAPI_LB_BIND": "127.0.0.1:18080"} | {
        f"PIAPI_REPLICA_{n}": f"127.0.0.1:1800{n}" for n in (1, 2, 3)
    }
    for env in ({}, given):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PIAPI_")} | env
        done = subprocess.run(
            [haproxy, "-c", "-f", config], env=clean, capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
    # A broken copy is refused: the check above can fail.
    broken = subprocess.run(
        [haproxy, "-c", "-f", "/dev/stdin"],
        input=(DEPLOY / "haproxy.cfg").read_text().replace("balance roundrobin", "balance no-such-algorithm"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert broken.returncode != 0


def test_the_plain_commands_script_is_valid_bash() -> None:
    script = DEPLOY / "run-local.sh"
    assert os.access(script, os.X_OK)
    done = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
