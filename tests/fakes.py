"""Shared test fakes: messages, a shared observation board and a scriptable worker agent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from swarm import Agent, Message, Reject, TaskContext, handler


class Work(Message):
    """A task for :class:`Worker`. ``mode`` scripts what the handler does."""

    n: int
    mode: str = "ok"
    blob: str = ""


class Other(Message):
    """A task type only :class:`OtherWorker` handles."""

    text: str


class Note(Message):
    """An event type for pub/sub tests."""

    text: str


@dataclass
class Run:
    agent_id: str
    n: int
    attempt: int


@dataclass
class Board:
    """What the workers did, shared by every replica in a test, with waitable changes."""

    started: list[Run] = field(default_factory=list)
    finished: list[Run] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    running: int = 0
    max_running: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def note(self, fn: Callable[[Board], None]) -> None:
        async with self.changed:
            fn(self)
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[Board], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: predicate(self))

    def finished_ns(self) -> list[int]:
        return [r.n for r in self.finished]


class Worker(Agent):
    """Scriptable agent. Modes: ok, fail (always raises), fail-twice, reject, block (until
    ``board.release``), hang-first (hangs on attempt 1), cancel-first (raises CancelledError
    on attempt 1), block-first (blocks on attempt 1 until released)."""

    role = "worker"
    subscriptions = ("test-topic",)

    def __init__(self, board: Board, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.board = board

    @handler
    async def work(self, msg: Work, ctx: TaskContext) -> int:
        run = Run(self.agent_id, msg.n, ctx.attempt)

        def start(b: Board) -> None:
            b.started.append(run)
            b.running += 1
            b.max_running = max(b.max_running, b.running)

        await self.board.note(start)
        try:
            mode = msg.mode
            if mode == "fail" or (mode == "fail-twice" and ctx.attempt <= 2):
                raise RuntimeError(f"scripted failure {msg.n}")
            if mode == "reject":
                raise Reject("not for me")
            if mode == "block" or (mode == "block-first" and ctx.attempt == 1):
                await self.board.release.wait()
            if mode == "hang-first" and ctx.attempt == 1:
                await asyncio.Event().wait()
            if mode == "cancel-first" and ctx.attempt == 1:
                raise asyncio.CancelledError()
        finally:
            await self.board.note(lambda b: setattr(b, "running", b.running - 1))
        await self.board.note(lambda b: b.finished.append(run))
        return msg.n * 2

    @handler
    async def on_note(self, msg: Note, ctx: TaskContext) -> None:
        await self.board.note(lambda b: b.events.append((self.agent_id, msg.text)))


class OtherWorker(Agent):
    """Handles :class:`Other` only."""

    role = "other"

    @handler
    async def other(self, msg: Other) -> str:
        return msg.text.upper()
