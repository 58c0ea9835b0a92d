"""The README's "Claude in the swarm" snippet runs as written (offline: no key)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_llm_snippet_runs_offline() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Claude in the swarm", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SWARM_"))}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                         env=env, timeout=60, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "True"
    assert out.stdout.count("llm_fallback") == 1
