"""``python -m swarm.queen``: run as the README does, plus settings and error paths."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agents.corpus import load_corpus
from swarm.cli import build_parser, main, settings_from
from swarm.errors import ConfigError
from swarm.settings import SwarmSettings

ROOT = Path(__file__).resolve().parents[1]


def fresh_env(**extra: str) -> dict[str, str]:
    """A minimal environment: nothing SWARM_* leaks in from the developer's shell."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
    env.update(extra)
    return env


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm.queen", *args], cwd=ROOT, env=fresh_env(**env),
        capture_output=True, text=True, timeout=60,
    )


def test_runs_the_bundled_job_and_reports() -> None:
    proc = run_cli()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    corpus = load_corpus()
    sources = len(corpus.sources)
    assert f"found in {sources} sources ({len(corpus.labels)} unique documents" in out
    assert f"Against {len(corpus.labels)} labelled documents: precision 0." in out
    assert "recall 0." in out
    assert "Tasks: queued=0 running=0 done=" in out and "failed=0 dead=0 expired=0" in out
    assert "Retries: 5" in out and "Dead letters: 0" in out and "Result: OK" in out
    assert "down-mirror" in out and "circuit open" in out
    # Progress goes to stderr as plain lines when it is not a terminal.
    assert f"[scrape {sources}/{sources}]" in proc.stderr and "\r" not in proc.stderr


def test_json_report_parses() -> None:
    proc = run_cli("--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert report["announcements"]
    for a in report["announcements"]:
        assert set(a) >= {"project", "ticker", "date", "confidence", "evidence", "doc_ids"}
    ev = report["evaluation"]
    assert ev["labelled"] == len(load_corpus().labels) and 0 < ev["precision"] <= 1
    assert report["tasks"]["dead"] == 0 and report["retries"] == 5
    assert {s["stage"] for s in report["stages"]} == {"scrape", "score", "validate"}
    assert "[scrape" not in proc.stderr


def test_input_file_with_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"id": "x1", "title": "Introducing Plasma (XPL) on Binance HODLer Airdrops", '
        '"body": "Binance will list XPL at 2025-09-25 13:00 (UTC).", '
        '"published": "2025-09-24", "url": "https://example.org/x1"}\n'
        "{broken\n"
        '{"id": "x2", "text": "A market wrap: Bitcoin flat."}\n',
        encoding="utf-8",
    )
    proc = run_cli("--input", str(path), "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    [a] = report["announcements"]
    assert (a["project"], a["ticker"], a["date"], a["doc_ids"]) == (
        "Plasma", "XPL", "2025-09-25", ["x1"]
    )
    assert a["evidence"] and 0.5 < a["confidence"] <= 0.99
    assert report["malformed_lines"][0].startswith("line 2: invalid JSON")
    assert report["evaluation"] is None
    text = run_cli("--input", str(path), "--no-progress")
    assert "Malformed input lines skipped: 1" in text.stdout and "line 2:" in text.stdout


def test_input_file_missing_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli("--input", str(tmp_path / "nope.jsonl"), "--no-progress")
    assert proc.returncode == 2
    assert "cannot read input file" in proc.stderr


def test_help() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for option in ("--agents", "--redis", "--consul", "--serve", "--json", "SWARM_REDIS_URL"):
        assert option in proc.stdout


def test_bad_agents_spec_from_env_is_a_usage_error() -> None:
    proc = run_cli(SWARM_AGENTS="no_such_module:factory")
    assert proc.returncode == 2
    assert "cannot import agents module 'no_such_module'" in proc.stderr


@pytest.mark.parametrize("extra", [(), ("--agents", "examples.quickstart:make_agents")])
async def test_serve_until_sigterm_then_drain(extra: tuple[str, ...]) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "swarm.queen", "--serve", *extra, cwd=ROOT, env=fresh_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(30):
            while not lines or "ready" not in lines[-1]:
                line = (await proc.stderr.readline()).decode()
                assert line, f"exited before ready: {''.join(lines)}"
                lines.append(line)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = (await proc.stderr.read()).decode()
            rc = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert rc == 0, rest
    assert ("greeter" in lines[-1]) == bool(extra)
    assert "draining" in rest and "0 unfinished tasks" in rest


def test_redis_without_the_redis_runtime_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "swarm.redis", None)  # import fails as if not installed
    assert main(["--redis", "redis://127.0.0.1:6379/0", "--no-progress"]) == 2
    assert "--redis needs the 'swarm.redis' module" in capsys.readouterr().err


def test_consul_without_discovery_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "discovery", None)
    assert main(["--consul", "http://127.0.0.1:8500"]) == 2
    assert "--consul needs the 'discovery' module" in capsys.readouterr().err


def test_settings_from_env_and_options() -> None:
    env = {
        "SWARM_REDIS_URL": "redis://env:6379/0", "SWARM_LOG_LEVEL": "DEBUG",
        "SWARM_LOG_JSON": "yes", "SWARM_AGENTS": "examples.quickstart:make_agents",
    }
    s = settings_from(build_parser().parse_args([]), env)
    assert s == SwarmSettings(
        redis_url="redis://env:6379/0", log_level="debug", log_json=True,
        agents="examples.quickstart:make_agents",
    )
    s = settings_from(build_parser().parse_args(["--redis", "rediss://opt:6380/1"]), env)
    assert s.redis_url == "rediss://opt:6380/1" and s.log_json is True
    assert SwarmSettings.from_env({}) == SwarmSettings()


@pytest.mark.parametrize(
    "env",
    [{"SWARM_LOG_JSON": "maybe"}, {"SWARM_LOG_LEVEL": "loud"}, {"SWARM_AGENTS": "nocolon"},
     {"SWARM_REDIS_URL": "http://x"}, {"SWARM_CONSUL_URL": "redis://x"}],
)
def test_invalid_settings_are_config_errors(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        SwarmSettings.from_env(env)


def test_from_dsn() -> None:
    assert SwarmSettings.from_dsn("redis://u:p@h:6379/2").redis_url == "redis://u:p@h:6379/2"
    with pytest.raises(ConfigError):
        SwarmSettings.from_dsn("postgres://h/db")


def test_agents_without_a_job_fail_clearly() -> None:
    proc = run_cli("--agents", "examples.quickstart:make_agents")
    assert proc.returncode == 2
    assert "has no job to run; serve its agents with --serve" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--lease-ttl", "0"), "lease TTL must be a positive number of seconds, not 0"),
        (("--task-timeout", "-1"), "task timeout must be a positive number of seconds, not -1"),
        (("--drain-timeout", "nan"), "drain timeout must be a number of seconds >= 0, not nan"),
        (("--leader-timeout", "inf"), "leader timeout must be a positive number of seconds"),
        (("--http", "nowhere"), "HTTP address 'nowhere' must look like HOST:PORT"),
        (("--postgres", "mysql://x"), "postgres URL 'mysql://x' must start with one of"),
    ],
)
def test_bad_options_are_one_line_errors(option: tuple[str, ...], message: str) -> None:
    proc = run_cli(*option, "--serve")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m swarm.queen: error: ")
    assert message in lines[0]


def test_public_http_without_tokens_refuses_to_start() -> None:
    proc = run_cli("--serve", "--http", "0.0.0.0:0")
    assert proc.returncode == 2
    assert "refusing to serve the HTTP API on 0.0.0.0:0 without tokens" in proc.stderr


def test_unreachable_redis_exits_1_naming_it() -> None:
    proc = run_cli("--redis", "redis://:hunter2@127.0.0.1:1/0", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("python -m swarm.queen: error: unreachable")
    assert "hunter2" not in proc.stderr


def test_progress_rewrites_one_line_on_a_terminal() -> None:
    from swarm.cli import _ProgressDisplay

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    display = _ProgressDisplay(tty, enabled=True)
    display("scrape", 1, 2, "a")
    display("scrape", 2, 2, "b")
    display.message("done")
    assert tty.getvalue() == "\r\x1b[K[scrape 1/2] a\r\x1b[K[scrape 2/2] b\nqueenswarm: done\n"


def test_unreachable_postgres_exits_1_without_its_password() -> None:
    proc = run_cli("--serve", "--agents", "examples.quickstart:make_agents",
                   "--postgres", "postgresql://bee:s3cretpw@127.0.0.1:1/swarm")
    assert proc.returncode == 1, proc.stderr
    assert "error: unreachable: PostgreSQL unavailable" in proc.stderr
    assert "s3cretpw" not in proc.stderr + proc.stdout


async def test_serving_with_tokens_never_shows_them() -> None:
    secret = "admin-secret-never-logged-0123"
    env = fresh_env(SWARM_TOKENS=f"admin:{secret}", SWARM_LOG_LEVEL="debug")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "swarm.queen", "--serve", "--http", "127.0.0.1:0",
        "--agents", "examples.quickstart:make_agents", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(30):
            while not lines or "ready" not in lines[-1]:
                line = (await proc.stderr.readline()).decode()
                assert line, f"exited before ready: {''.join(lines)}"
                lines.append(line)
        assert any("HTTP API on http://127.0.0.1:" in line and "1 tokens" in line
                   for line in lines)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = (await proc.stderr.read()).decode()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert secret not in "".join(lines) + rest
