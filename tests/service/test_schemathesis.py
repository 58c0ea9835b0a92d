"""schemathesis over the whole OpenAPI document of a served swarm, with and without tokens.

The server runs as users run it (``python -m swarm.queen --serve --http``);
schemathesis generates requests from the document (valid ones and broken
ones) and checks that no answer is a server error and that every answer
matches the document: status codes, content types and schemas. The number
of examples per operation is bounded so that CI stays in minutes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm.service.auth import hash_token

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ",".join((
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_schema_conformance", "response_headers_conformance",
))
ADMIN = "admin-token-for-schemathesis-0123456789"


def schemathesis_bin() -> str:
    path = Path(sys.executable).with_name("schemathesis")
    if not path.exists():
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'")
    return str(path)


def _serve(*extra: str) -> tuple[subprocess.Popen[str], str]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm.queen", "--serve", "--http", "127.0.0.1:0",
         "--agents", "tests.service.agents:make_quick_agents", "--no-progress", *extra],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        m = re.search(r"HTTP API on (http://\S+)", line)
        if m:
            return proc, m.group(1)
    proc.wait(10)
    pytest.fail("the server did not start: " + "".join(lines))


@pytest.fixture(params=["open", "tokens"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    extra: list[str] = []
    headers: list[str] = []
    if request.param == "tokens":
        tokens = tmp_path / "tokens"
        tokens.write_text(f"admin {hash_token(ADMIN)} fuzzer\n")
        extra = ["--tokens-file", str(tokens)]
        headers = ["-H", f"Authorization: Bearer {ADMIN}"]
    proc, url = _serve(*extra)
    try:
        yield url, headers
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_whole_document_no_server_errors_and_conforming_answers(
    served: tuple[str, list[str]], tmp_path: Path,
) -> None:
    url, headers = served
    started = time.monotonic()
    checks = CHECKS + (",ignored_auth" if headers else "")
    proc = subprocess.run(
        [schemathesis_bin(), "run", f"{url}/openapi.json", "--checks", checks,
         "--max-examples", "10", "--phases", "coverage,fuzzing,stateful", "--seed", "1",
         "--request-timeout", "70", "--generation-database", "none", "--no-color",
         "--report-dir", str(tmp_path), *headers],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    m = re.search(r"Operations:\s+(\d+) selected / (\d+) total", proc.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) >= 19, proc.stdout[:2000]
    assert time.monotonic() - started < 300
