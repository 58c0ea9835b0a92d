"""Every snippet of docs/ (and the README's service lines and memory snippet) runs as written.

Python blocks run as scripts; shell blocks run in bash with ``-e``. The
addresses the pages show are swapped for the test servers' (Redis with a key
prefix of this test's own, a PostgreSQL schema of its own, the Consul test
server, a free port for each API port) and ``python``/``queenswarm`` for this
interpreter; everything a block left running in the background is stopped.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from pathlib import Path

import pytest

from tests.consul_server import FakeConsul
from tests.servers import require_postgres, require_redis

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"```(python|sh)\n(.*?)```", re.S)


def blocks(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(path.read_text())]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def substitute(text: str, consul_url: str | None) -> str:
    """The snippet, pointed at the test servers and this interpreter."""
    prefix = f"docs-{os.urandom(4).hex()}"
    redis = require_redis() if "redis://127.0.0.1:6379/0" in text else ""
    if redis:
        redis += f"{'&' if '?' in redis else '?'}prefix={prefix}"
        text = text.replace("redis://127.0.0.1:6379/0", redis)
    if "postgresql://postgres@127.0.0.1:5432/swarm" in text:
        dsn = require_postgres()
        dsn += f"{'&' if '?' in dsn else '?'}schema=docs_{prefix[5:]}"
        text = text.replace("postgresql://postgres@127.0.0.1:5432/swarm", dsn)
    if consul_url is not None:
        text = text.replace("consul://127.0.0.1:8500", consul_url)
    for port in sorted(set(re.findall(r"(?:127\.0\.0\.1|localhost):(80\d\d)\b", text))):
        free = str(_free_port())
        text = re.sub(rf"(127\.0\.0\.1|localhost):{port}\b", rf"\g<1>:{free}", text)
    exe = sys.executable
    text = re.sub(r"(^|[\s(|;&])\.venv/bin/python\b", rf"\g<1>{exe}", text)
    text = re.sub(r"(^|[\s(|;&])python\b(?= -m)", rf"\g<1>{exe}", text, flags=re.M)
    text = re.sub(r"(^|[\s(|;&]|\$\()(?:\.venv/bin/)?queenswarm\b", rf"\g<1>{exe} -m swarm.client",
                  text, flags=re.M)
    default_url = re.search(r"--http 127\.0\.0\.1:(\d+)", text)
    if default_url:
        # queenswarm's default URL is port 8080: follow the first server's new port.
        text = f"export SWARM_URL=http://127.0.0.1:{default_url.group(1)}\n" + text
    return text


async def run_block(lang: str, code: str, consul_url: str | None = None) -> str:
    code = substitute(code, consul_url)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": str(ROOT)}
    if lang == "python":
        argv = [sys.executable, "-c", code]
    else:
        script = (
            "set -euo pipefail\n"
            "trap 'for j in $(jobs -p); do kill -TERM $j 2>/dev/null || true; done; wait' EXIT\n"
            + code
        )
        argv = ["bash", "-c", script]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 180)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"snippet timed out:\n{code}\n{out.decode()}\n{err.decode()}")
    assert proc.returncode == 0, f"snippet failed:\n{code}\n--- out\n{out.decode()}\n--- err\n" \
        f"{err.decode()}"
    return out.decode()


def _ids() -> list[tuple[Path, int]]:
    return [(path, i) for path in DOCS for i, _ in enumerate(blocks(path))]


@pytest.mark.integration
@pytest.mark.parametrize(("path", "index"), _ids(), ids=lambda v: str(v.name if
                         isinstance(v, Path) else v))
async def test_docs_snippet_runs(path: Path, index: int) -> None:
    lang, code = blocks(path)[index]
    if "consul://" in code:
        async with FakeConsul() as consul:
            out = await run_block(lang, code, consul_url=f"consul://{consul.address}")
    else:
        out = await run_block(lang, code)
    for expected in re.findall(r"#\s*(\S.*?)\s*$", code, re.M):
        # A "# value" comment after a print() shows what it prints.
        line = code[: code.index(expected)].rsplit("\n", 1)[-1]
        if "print(" in line and "..." not in expected:
            assert expected in out, (expected, out)


def test_docs_exist_and_cover_the_guide() -> None:
    names = {p.name for p in DOCS}
    assert {"README.md", "agents.md", "running.md", "http-api.md", "operating.md"} <= names
    assert sum(len(blocks(p)) for p in DOCS) >= 12


async def test_readme_service_lines_run() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("### The swarm as a service", 1)[1]
    code = section.split("```sh\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) == 5
    out = await run_block("sh", code)
    assert '"state":"queued"' in out and "Hello, wasp!" in out
    table = out.split("Hello, wasp!", 1)[1]
    assert "TASK" in table and table.count("Greet") == 2


def test_readme_memory_snippet_runs() -> None:
    text = (ROOT / "README.md").read_text()
    snippet = next(code for lang, code in BLOCK.findall(text) if "MemoryCoordinator" in code)
    out = asyncio.run(run_block("python", snippet))
    assert out.strip().splitlines()[-1] == "Aurora TGE on 14 March"


def test_readme_consul_example_is_accepted() -> None:
    from swarm.cli import build_parser, settings_from

    line = next(line for line in (ROOT / "README.md").read_text().splitlines()
                if "--consul consul://" in line)
    args = build_parser().parse_args(line.split("python -m swarm.queen", 1)[1].split())
    settings = settings_from(args, {})
    assert settings.consul_url is not None and settings.consul_url.startswith("consul://")
