"""One state machine: the in-memory ledger follows swarm.ledger.MOVES for every pair of states."""

from __future__ import annotations

import itertools

import pytest

from swarm.ledger import (
    FINAL_STATES,
    MOVES,
    REDRIVE,
    InMemoryLedger,
    TaskRecord,
    TaskState,
    legal_move,
)

PAIRS = list(itertools.product(TaskState, TaskState))


def test_final_states_are_absorbing_in_the_table() -> None:
    for state in FINAL_STATES:
        assert MOVES[state] == frozenset()
    for state in set(TaskState) - FINAL_STATES:
        assert MOVES[state] == frozenset(TaskState)
    assert legal_move(*REDRIVE, redrive=True)
    assert not legal_move(TaskState.DONE, TaskState.QUEUED, redrive=True)


@pytest.mark.parametrize(("prev", "new"), PAIRS)
async def test_in_memory_update_follows_the_table(prev: TaskState, new: TaskState) -> None:
    ledger = InMemoryLedger()
    rec = ledger.create_nowait(
        TaskRecord(task_id="t", type="T", recipient="role:r", state=prev, result=b"first")
    )
    before = (rec.state, rec.result, rec.executions, rec.finished_at)
    moved = await ledger.update("t", new, result=b"second")
    if legal_move(prev, new):
        assert moved is not None and moved.state is new and moved.result == b"second"
    else:
        assert moved is None
        assert (rec.state, rec.result, rec.executions, rec.finished_at) == before
    counts = await ledger.counts()
    assert sum(counts.values()) == 1


@pytest.mark.parametrize("prev", list(TaskState))
def test_in_memory_hot_paths_follow_the_table(prev: TaskState) -> None:
    ledger = InMemoryLedger()
    rec = ledger.create_nowait(
        TaskRecord(task_id="t", type="T", recipient="role:r", state=prev, result=b"first")
    )
    ledger.running_nowait("t", 2, "agent")
    assert rec.state is (TaskState.RUNNING if legal_move(prev, TaskState.RUNNING) else prev)
    done = ledger.done_nowait("t", 2, b"second", "")
    if legal_move(prev, TaskState.DONE):
        assert done is rec and rec.state is TaskState.DONE and rec.executions == 1
    else:
        assert done is None and rec.result == b"first" and rec.executions == 0


async def test_redrive_is_the_one_move_out_of_dead() -> None:
    ledger = InMemoryLedger()
    for task_id, state in (("dead", TaskState.DEAD), ("done", TaskState.DONE)):
        ledger.create_nowait(TaskRecord(task_id=task_id, type="T", recipient="r", state=state))
    assert await ledger.requeue_dead("done") is False
    assert await ledger.requeue_dead("dead") is True
    rec = await ledger.get("dead")
    assert rec is not None and rec.state is TaskState.QUEUED and rec.finished_at is None
    assert await ledger.requeue_dead("missing") is None
