"""SwarmClient and the ``queenswarm`` command against a served swarm, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from swarm.client import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    SwarmClient,
    Unauthorized,
)
from swarm.errors import (
    MessageError,
    SwarmError,
    SwarmTimeout,
    TaskDeadLettered,
    TaskFailed,
    TransportError,
)
from swarm.service.auth import TokenStore
from tests.service.agents import HoldAgent
from tests.service.conftest import TOKENS, ServeFactory

ROOT = Path(__file__).resolve().parents[2]


async def test_client_round_trip_and_errors(serve: ServeFactory) -> None:
    served = await serve()
    async with SwarmClient(served.url) as client:
        sub = await client.submit("Echo", {"text": "hi", "n": 1})
        assert await client.result(sub.task_id, timeout=10) == {"text": "hi", "n": 2, "tags": []}
        assert (await client.status(sub.task_id)).state == "done"
        waited = await client.submit("Echo", {"text": "now"}, wait=10)
        assert waited.task is not None and waited.task.result["text"] == "now"
        refused = await client.submit("Boom", {"refuse": True})
        with pytest.raises(TaskFailed, match="refused on purpose"):
            await client.result(refused.task_id, timeout=10)
        dead = await client.submit("Boom", {}, max_attempts=1)
        with pytest.raises(TaskDeadLettered):
            await client.result(dead.task_id, timeout=10)
        assert [d.task_id for d in await client.dead_letters()] == [dead.task_id]
        with pytest.raises(BadRequest) as bad:
            await client.submit("Echo", {"text": ["not", "a", "string"]})
        assert bad.value.field == "payload.text" and isinstance(bad.value, MessageError)
        await client.submit("Echo", {"text": "a"}, idempotency_key="k")
        with pytest.raises(Conflict):
            await client.submit("Echo", {"text": "b"}, idempotency_key="k")
        with pytest.raises(NotFound):
            await client.status("missing")
        held = await client.submit("Hold", {"gate": "c"})
        with pytest.raises(SwarmTimeout):
            await client.result(held.task_id, timeout=0.3)
        HoldAgent.gate("c").set()
        assert await client.result(held.task_id, timeout=10) == "released c"
        memory_id = await client.remember("research.tge", "Kite TGE on 2 June", tags=["tge"])
        assert (await client.recall("kite tge", k=1))[0].memory.id == memory_id
        assert {r.role for r in await client.roles()} == {"echo", "hold", "boom"}
        assert (await client.ready()).status == "leading"


async def test_client_auth_errors(serve: ServeFactory) -> None:
    served = await serve(tokens=True)
    async with SwarmClient(served.url) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.agents()
    async with SwarmClient(served.url, token=TOKENS["viewer"]) as viewer:
        assert len(await viewer.agents()) == 3
        with pytest.raises(Forbidden) as forbidden:
            await viewer.submit("Echo", {"text": "x"})
        assert forbidden.value.status == 403 and isinstance(forbidden.value, SwarmError)


async def test_unreachable_is_a_transport_error() -> None:
    async with SwarmClient("http://127.0.0.1:1", timeout=5) as client:
        with pytest.raises(TransportError, match=r"cannot reach the swarm at http://127\.0\.0\.1:1"):
            await client.roles()


async def cli(*args: str, **env: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "swarm.client", *args, cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("runtime", ["inprocess"], indirect=True)
async def test_queenswarm_command(serve: ServeFactory) -> None:
    served = await serve(tokens=True)
    env = {"SWARM_URL": served.url, "SWARM_TOKEN": TOKENS["operator"]}
    rc, out, err = await cli("submit", "Echo", '{"text": "bee"}', "--wait", "10", **env)
    assert rc == 0, err
    task_id, _, rest = out.strip().partition(" done: ")
    assert json.loads(rest) == {"text": "bee", "n": 1, "tags": []}
    rc, out, err = await cli("result", task_id, **env)
    assert rc == 0 and json.loads(out) == {"text": "bee", "n": 1, "tags": []}
    rc, out, err = await cli("status", task_id, **env)
    assert rc == 0 and out.splitlines()[0].split()[:3] == ["TASK", "TYPE", "STATE"]
    assert f"{task_id}  Echo  done" in out
    rc, out, err = await cli("roles", **env)
    assert rc == 0 and out.splitlines()[0].startswith("ROLE")
    assert {line.split()[0] for line in out.splitlines()[1:]} == {"boom", "echo", "hold"}
    rc, out, err = await cli("--json", "agents", **env)
    assert rc == 0 and {a["role"] for a in json.loads(out)} == {"boom", "echo", "hold"}
    rc, out, err = await cli("agents", "--json", **env)
    assert rc == 0 and {a["role"] for a in json.loads(out)} == {"boom", "echo", "hold"}
    rc, out, err = await cli("submit", "Boom", '{"refuse": true}', "--wait", "10", **env)
    assert rc == 1 and "refused on purpose" in err
    rc, out, err = await cli("dlq", **env)
    assert rc == 0 and out.startswith("TASK")
    rc, out, err = await cli("dlq", "redrive", "nope", **env)
    assert rc == 1 and "404 dead-letter-not-found" in err
    rc, out, err = await cli("submit", "Echo", "{oops", **env)
    assert rc == 2 and "payload is not JSON" in err
    rc, out, err = await cli("submit", "Echo", '{"text": 1}', **env)
    assert rc == 1 and "400 invalid-request [payload.text]" in err
    rc, out, err = await cli("recall", "bee", **{**env, "SWARM_TOKEN": "wrong-token"})
    assert rc == 1 and "401 bad-token" in err and "wrong-token" not in err


def test_token_command_makes_a_tokens_file_line() -> None:
    proc = asyncio.run(cli("token", "operator", "ci-bot"))
    rc, out, _ = proc
    assert rc == 0
    secret = out.splitlines()[0].removeprefix("token: ")
    line = out.splitlines()[1].removeprefix("tokens-file line: ")
    assert TokenStore.parse_lines([line]).role_of(secret) == "operator"
    assert secret not in line


def test_global_options_are_accepted_after_the_command() -> None:
    from swarm.client.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["agents", "--json", "--url", "http://10.0.0.1:9", "--timeout", "3"])
    assert (args.json, args.url, args.timeout) == (True, "http://10.0.0.1:9", 3.0)
    args = parser.parse_args(["--json", "--token", "t", "status", "ID"])
    assert (args.json, args.token, args.task_id) == (True, "t", "ID")
    args = parser.parse_args(["result", "ID", "--wait", "5"])
    assert (args.json, args.url, args.token, args.timeout) == (False, None, None, 30.0)


@pytest.mark.parametrize("url", ["localhost:8080", "foo", "ftp://x", "http://", "http://[::1"])
def test_a_malformed_url_is_a_config_error(url: str) -> None:
    from swarm.errors import ConfigError

    with pytest.raises(ConfigError, match="API URL"):
        SwarmClient(url)


@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_a_timeout_must_be_positive(timeout: float) -> None:
    from swarm.errors import ConfigError

    with pytest.raises(ConfigError, match="timeout must be a positive"):
        SwarmClient("http://127.0.0.1:8080", timeout=timeout)


def test_queenswarm_bad_url_or_timeout_exits_2_in_one_line() -> None:
    rc, _out, err = asyncio.run(cli("--url", "localhost:8080", "agents"))
    assert rc == 2 and err.count("\n") == 1, err
    assert "must look like http://HOST:PORT" in err and "cannot reach" not in err
    rc, _out, err = asyncio.run(cli("agents", "--timeout", "0", SWARM_URL="http://127.0.0.1:1"))
    assert rc == 2 and err.count("\n") == 1 and "timeout must be a positive" in err, err
    rc, _out, err = asyncio.run(cli("agents", SWARM_URL="http://127.0.0.1:1"))
    assert rc == 1 and "cannot reach the swarm" in err, err
