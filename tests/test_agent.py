from __future__ import annotations

import pytest

from swarm import Agent, AgentState, ConfigError, Message, TaskContext, handler
from swarm.testing import run_task


class Ping(Message):
    text: str


class Pong(Message):
    text: str


class PingAgent(Agent):
    capabilities = frozenset({"extra-skill"})

    @handler
    async def ping(self, msg: Ping, ctx: TaskContext) -> Pong:
        return Pong(text=f"{msg.text}:{ctx.attempt}:{ctx.agent.role}")


class Child(PingAgent):
    role = "child"

    @handler(Pong)
    async def pong(self, msg: Pong) -> str:
        return msg.text


def test_role_defaults_to_snake_case_without_agent_suffix() -> None:
    assert PingAgent.role == "ping"
    assert Child.role == "child"


def test_capabilities_come_from_handlers_and_declarations() -> None:
    assert PingAgent.capabilities == {"Ping", "extra-skill"}
    assert Child.capabilities == {"Ping", "Pong"}


async def test_handlers_return_typed_results() -> None:
    assert await run_task(PingAgent(), Ping(text="hi")) == Pong(text="hi:1:ping")
    assert await run_task(Child(), Pong(text="x")) == "x"


def test_handler_without_annotation_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must be annotated with a Message"):

        class Bad(Agent):
            @handler
            async def h(self, msg: int) -> None: ...


def test_handler_must_be_async() -> None:
    with pytest.raises(ConfigError, match="async def"):

        class Bad(Agent):
            @handler  # type: ignore[call-overload]
            def h(self, msg: Ping) -> None: ...


def test_handler_needs_a_message_parameter() -> None:
    with pytest.raises(ConfigError, match="must take the message"):

        class Bad(Agent):
            @handler(Ping)
            async def h(self) -> None: ...


def test_new_agent_is_stopped_and_unbound() -> None:
    agent = PingAgent(agent_id="p-1", concurrency=3)
    assert (agent.agent_id, agent.concurrency, agent.state) == ("p-1", 3, AgentState.STOPPED)
    with pytest.raises(ConfigError, match="not registered"):
        _ = agent.context
    with pytest.raises(ConfigError):
        PingAgent(concurrency=0)


async def test_failing_on_start_marks_agent_failed() -> None:
    from swarm import InProcessRuntime

    class Broken(Agent):
        async def on_start(self) -> None:
            raise RuntimeError("no config")

    runtime = InProcessRuntime()
    await runtime.start()
    agent = Broken()
    with pytest.raises(RuntimeError):
        await runtime.register(agent)
    assert agent.state is AgentState.FAILED
    await runtime.stop()
