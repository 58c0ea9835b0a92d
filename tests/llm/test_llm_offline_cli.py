"""Acceptance: with no key, ``python -m swarm.queen`` is the offline detector's run:
same output, and the SDK is never even imported (same speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_PROBE = (
    "import sys; from swarm.cli import main; rc = main(sys.argv[1:]); "
    "print('ANTHROPIC-IMPORTED' if 'anthropic' in sys.modules else 'anthropic-not-imported'); "
    "sys.exit(rc)"
)


def _run(*args: str, key: str | None) -> tuple[dict[str, object], str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANTHROPIC_", "SWARM_"))}
    if key is not None:
        env["ANTHROPIC_API_KEY"] = key
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, "--json", "--no-progress", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout[: proc.stdout.rindex("}") + 1])
    for volatile in ("elapsed_s", "stages", "slowest_stage"):
        data.pop(volatile, None)
    return data, proc.stdout.strip().splitlines()[-1]


@pytest.mark.timeout(300)
def test_no_key_and_llm_offline_run_the_rules_without_the_sdk() -> None:
    no_key, probe = _run(key=None)
    assert probe == "anthropic-not-imported"
    offline, probe = _run("--llm", "offline", key="sk-ant-unused")
    assert probe == "anthropic-not-imported"
    assert offline == no_key and no_key.get("llm") is None
    assert no_key["ok"] and no_key["announcements"]


def test_llm_online_without_a_key_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SWARM_"))}
    proc = subprocess.run([sys.executable, "-m", "swarm.queen", "--llm", "online"],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode != 0 and "ANTHROPIC_API_KEY" in proc.stderr
