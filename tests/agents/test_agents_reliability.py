"""API reliability: breaker transitions and the agent's report."""

from __future__ import annotations

from agents import ApiReliabilityAgent
from agents.messages import (
    CheckCircuit,
    CircuitStatus,
    RecordFetch,
    ReliabilityQuery,
    ReliabilityReport,
)
from agents.reliability import Breaker
from swarm import Swarm


def state(b: Breaker) -> str:
    # A call, so mypy does not narrow the state across the transitions below.
    return b.state.value


def test_breaker_opens_half_opens_and_closes() -> None:
    b = Breaker(failure_threshold=2, cooldown=10.0)
    b.record(False, now=0.0, error="503")
    assert state(b) == "closed" and b.allow(now=0.5)
    b.record(False, now=1.0, error="503")
    assert state(b) == "open" and not b.allow(now=5.0)
    assert b.allow(now=11.0) and state(b) == "half_open"
    b.record(False, now=11.5)
    assert state(b) == "open" and not b.allow(now=12.0)
    assert b.allow(now=22.0)
    b.record(True, now=22.5)
    assert state(b) == "closed" and b.consecutive_failures == 0
    assert (b.successes, b.failures, b.last_error) == (1, 3, "")


async def test_agent_tracks_sources_with_an_injected_clock() -> None:
    now = [0.0]
    agent = ApiReliabilityAgent(failure_threshold=1, cooldown=5.0, clock=lambda: now[0])
    async with Swarm(agents=[agent]) as swarm:
        await (await swarm.submit(RecordFetch(source_id="b", ok=True))).result(timeout=5)
        status: CircuitStatus = await (
            await swarm.submit(RecordFetch(source_id="a", ok=False, error="refused"))
        ).result(timeout=5)
        assert status.state.value == "open" and not status.allowed
        check: CircuitStatus = await (await swarm.submit(CheckCircuit(source_id="a"))).result(5)
        assert not check.allowed
        now[0] = 6.0
        check = await (await swarm.submit(CheckCircuit(source_id="a"))).result(5)
        assert check.allowed and check.state.value == "half_open"
        h = await swarm.submit(ReliabilityQuery())
        await swarm.run_until_idle(timeout=10)
        report: ReliabilityReport = await h.result()
    assert [(s.source_id, s.successes, s.failures, s.success_rate) for s in report.sources] == [
        ("a", 0, 1, 0.0), ("b", 1, 0, 1.0),
    ]
    assert report.sources[0].last_error == "refused"
