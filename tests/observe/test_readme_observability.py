"""The README's Observability lines run as written (against a served swarm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_docs import run_block

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
async def test_readme_observability_lines_run() -> None:
    section = (ROOT / "README.md").read_text().split("## Observability", 1)[1]
    code = section.split("```sh\n", 1)[1].split("```", 1)[0]
    out = await run_block("sh", code)
    assert 'swarm_tasks_finished_total{role="greeter",state="done"} 1.0' in out, out
    assert "<title>queenswarm</title>" in out
