from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm import InMemoryLedger, RetryPolicy, TaskRecord, TaskState


@given(st.integers(1, 60), st.floats(0, 1))
def test_backoff_is_bounded_and_jitter_only_shortens(attempt: int, jitter: float) -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=3.0, jitter=jitter)
    full = min(3.0, 0.1 * 2 ** (attempt - 1))
    delay = policy.backoff(attempt)
    assert full * (1 - jitter) - 1e-9 <= delay <= full + 1e-9


def test_backoff_doubles_without_jitter() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=10.0, jitter=0.0)
    assert [policy.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"base_delay": -1}, {"jitter": 1.5}, {"max_delay": -0.1}]
)
def test_invalid_policies_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


async def test_ledger_counts_and_idempotency() -> None:
    ledger = InMemoryLedger()
    a = await ledger.create(TaskRecord(task_id="a", type="T", recipient="r", idempotency_key="k"))
    b = await ledger.create(TaskRecord(task_id="b", type="T", recipient="r", idempotency_key="k"))
    assert b is a
    await ledger.create(TaskRecord(task_id="c", type="T", recipient="r"))
    await ledger.update("a", TaskState.RUNNING, attempts=1, agent_id="x")
    await ledger.update("a", TaskState.DONE, result=b"\x01", result_type="")
    assert await ledger.counts() == {TaskState.DONE: 1, TaskState.QUEUED: 1}
    rec = await ledger.get("a")
    assert rec is not None and rec.final and rec.executions == 1 and rec.finished_at is not None
    assert await ledger.update("missing", TaskState.DONE) is None


async def test_ledger_evicts_oldest_final_records_only() -> None:
    ledger = InMemoryLedger(max_final=3)
    for i in range(6):
        await ledger.create(
            TaskRecord(task_id=f"t{i}", type="T", recipient="r", idempotency_key=f"k{i}")
        )
    for i in range(5):
        await ledger.update(f"t{i}", TaskState.DONE)
    kept = [i for i in range(6) if await ledger.get(f"t{i}") is not None]
    assert kept == [2, 3, 4, 5]  # the two oldest final records went; t5 is still queued
    assert await ledger.counts() == {TaskState.DONE: 3, TaskState.QUEUED: 1}
    assert (
        await ledger.create(TaskRecord(task_id="n", type="T", recipient="r", idempotency_key="k0"))
        is not None
    )
    assert (await ledger.get("n")) is not None  # an evicted task's key can be claimed again
