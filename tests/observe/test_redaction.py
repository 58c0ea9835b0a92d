"""Log redaction: canary secrets logged through every path never reach a sink."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from aiohttp import web

from memory.settings import MemorySettings, PostgresSettings
from swarm import Agent, InProcessRuntime, Message, handler
from swarm.agent.context import TaskContext
from swarm.logging import REDACTED, Secret, configure_logging, redact, redact_text
from swarm.redis.runtime import RedisRuntime
from swarm.redis.settings import RedisSettings
from swarm.settings import SwarmSettings
from tests.redis_server import free_port

PASSWORD = "CANARYpw1x"
TOKEN = "CANARYtok2x"
ANTHROPIC = "sk-ant-api03-CANARY3x_yz"
API_KEY = "CANARYkey4x"
NOTE = "CANARYnote5x"
CANARIES = (PASSWORD, TOKEN, ANTHROPIC, API_KEY, NOTE, "CANARY")


class Login(Message):
    user: str
    api_key: str
    note: Secret


class LoginAgent(Agent):
    role = "obs_login"

    @handler
    async def login(self, msg: Login, ctx: TaskContext) -> str:
        ctx.log.info("login received", payload=msg)
        structlog.get_logger("elsewhere").info("library line inside the task")
        try:
            raise RuntimeError(f"upstream refused key {msg.api_key} and {ANTHROPIC}")
        except RuntimeError:
            ctx.log.exception("upstream call failed")
        return msg.user


@pytest.fixture(autouse=True)
def reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != "swarm"]


def test_text_shapes() -> None:
    assert redact_text(f"redis://:{PASSWORD}@h:6379/0") == f"redis://:{REDACTED}@h:6379/0"
    assert redact_text(f"postgresql://u:{PASSWORD}@h/db") == f"postgresql://u:{REDACTED}@h/db"
    assert redact_text(f"Authorization: Bearer {TOKEN}") == f"Authorization: Bearer {REDACTED}"
    assert redact_text(f"key={ANTHROPIC}.") == f"key=sk-ant-{REDACTED}."
    # Left alone: URLs without a password, ordinary words.
    for text in ("redis://127.0.0.1:6379/0", "https://example.com/a:b@c", "bearer of news"):
        assert redact_text(text) == text or "://" in text
    assert redact_text("postgresql://postgres@127.0.0.1:5432/x") == (
        "postgresql://postgres@127.0.0.1:5432/x"
    )
    assert redact({"Authorization": "x", "nested": [{"db_password": "y"}], "n": 1}) == {
        "Authorization": REDACTED,
        "nested": [{"db_password": REDACTED}],
        "n": 1,
    }


@pytest.mark.parametrize("as_json", [True, False])
async def test_canaries_never_reach_a_sink(as_json: bool) -> None:
    out = io.StringIO()
    configure_logging(level="debug", json=as_json, stream=out, timestamps=False)
    log = structlog.get_logger("canary")

    # Settings and their reprs.
    redis_settings = RedisSettings.from_dsn(f"redis://app:{PASSWORD}@127.0.0.1:1/0")
    pg = PostgresSettings.from_dsn(f"postgresql://app:{PASSWORD}@127.0.0.1:1/db")
    log.info("settings", redis=redis_settings, memory=MemorySettings(postgres=pg))
    log.info(f"connecting with {pg!r}")
    log.info("keys by name", password=PASSWORD, api_key=API_KEY, auth_token=TOKEN)
    swarm_settings = SwarmSettings(
        tokens=(f"operator:{TOKEN}",), redis_url=f"redis://:{PASSWORD}@127.0.0.1:1/0"
    )
    log.info("serving", settings=swarm_settings)
    log.warning(f"serving with {swarm_settings!r}")

    # A real connection error, logged with its traceback.
    port = free_port()
    runtime = RedisRuntime(
        settings=RedisSettings.from_dsn(f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    )
    with pytest.raises(Exception) as failed:
        await runtime.start()
    try:
        raise RuntimeError(f"while using {redis_settings.to_dsn()}") from failed.value
    except RuntimeError:
        log.exception("cannot start")
    await runtime.stop()

    # HTTP headers, structlog and the standard library (aiohttp's own loggers).
    seen: dict[str, str] = {}

    async def echo(request: web.Request) -> web.Response:
        seen.update(request.headers)
        logging.getLogger("aiohttp.server").warning("request headers %s", dict(request.headers))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    import aiohttp

    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": API_KEY}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200
        log.info("called upstream", headers=dict(resp.request_info.headers))
    await runner.cleanup()
    assert seen["Authorization"] == f"Bearer {TOKEN}"  # the request did carry them

    # Task payloads with secret fields, logged inside a handler.
    rt = InProcessRuntime()
    await rt.start()
    try:
        await rt.register(LoginAgent())
        assert await rt.send(Login(user="ann", api_key=API_KEY, note=NOTE), sender="t") == "ann"
    finally:
        await rt.stop()

    text = out.getvalue()
    for canary in CANARIES:
        assert canary not in text, f"{canary} leaked:\n{text}"
    # What was logged is still there, masked.
    assert "login received" in text and "upstream call failed" in text
    assert "request headers" in text and "cannot start" in text
    assert "Traceback" in text and REDACTED in text and "ann" in text
    if as_json:
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        inside = [
            r for r in lines if r["event"] in {"login received", "library line inside the task"}
        ]
        assert len(inside) == 2
        assert all(r["task_id"] for r in inside)
        assert inside[0]["payload"] == {"user": "ann", "api_key": REDACTED, "note": REDACTED}
