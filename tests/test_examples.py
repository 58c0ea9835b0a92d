"""The examples run as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, f"examples/{name}"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )


def test_quickstart() -> None:
    proc = run_example("quickstart.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Hello, bee! (handled by greeter-")


def test_tge_pipeline() -> None:
    proc = run_example("tge_pipeline.py")
    assert proc.returncode == 0, proc.stderr
    assert " TGE announcements (" in proc.stdout and "ok: True" in proc.stdout
    assert "HMSTR  Hamster Kombat" in proc.stdout
