from __future__ import annotations

import pytest

from swarm import TaskDeadLettered, TaskState
from swarm.testing import EventRecorder, run_task, test_swarm
from tests.fakes import Board, Note, Work, Worker


async def test_run_task_returns_result_and_raises_failures() -> None:
    assert await run_task(Worker(Board()), Work(n=4)) == 8
    with pytest.raises(TaskDeadLettered):
        await run_task(Worker(Board()), Work(n=4, mode="fail"))


async def test_test_swarm_settles_all_work_before_exit() -> None:
    board = Board()
    async with test_swarm([Worker(board, concurrency=2)]) as swarm:
        handles = [await swarm.submit(Work(n=i, mode="fail-twice")) for i in range(5)]
    for h in handles:
        rec = await swarm.status(h.task_id)
        assert rec is not None and rec.state is TaskState.DONE and rec.attempts == 3


async def test_event_recorder_sees_broadcasts() -> None:
    recorder = EventRecorder()
    async with test_swarm([]) as swarm:
        await recorder.attach(swarm, "news")
        await swarm.publish("news", Note(text="a"))
        await swarm.publish("news", Note(text="b"))
        got = await recorder.wait_for(2)
    assert [e.type for e in got] == ["Note", "Note"]
