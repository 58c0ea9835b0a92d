"""The agent of ``bench/soak.py``: the work unit (a ~200-byte dict in, a dict out, checked)."""

from __future__ import annotations

from typing import Any

from swarm import Agent, Message, handler


class Work(Message):
    """A ~200-byte dict payload (with the envelope's ids and fields)."""

    n: int
    body: dict[str, Any]


class SoakAgent(Agent):
    role = "soak"

    @handler
    async def work(self, msg: Work) -> dict[str, Any]:
        return {"n": msg.n, "keys": sorted(msg.body), "size": len(msg.body["text"])}


def payload(n: int) -> Work:
    """Task ``n`` of the soak."""
    return Work(n=n, body={"text": "y" * 120, "source": "soak", "seq": n, "tags": ["a", "b"]})


def expected(n: int) -> dict[str, Any]:
    """The result task ``n`` must come back with."""
    return {"n": n, "keys": ["seq", "source", "tags", "text"], "size": 120}
