"""The README's tour is runnable as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tour_runs() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python block"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", blocks[0]], capture_output=True, text=True, env=env, timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    # structlog's default logger prints the handler's log line too; the tour's own output ends it.
    assert out.stdout.splitlines()[-2:] == ["TGE announced for $BEE on 1 Dec", "done"]
    assert "summarising" in out.stdout


def test_readme_opens_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().split("```")[1].strip().splitlines()[1:]
    assert len(lines) == 2
    assert lines[0].endswith("python -m swarm.queen")
    assert "pytest" in lines[1] and '".[test]"' in lines[1]
