"""Quickstart: compose a swarm, write an agent, submit a task, await its result.

Run: ``python examples/quickstart.py`` (prints ``Hello, bee! (handled by greeter-...)``).
"""

import asyncio

from swarm import Agent, Message, Swarm, TaskContext, handler


class Greet(Message):
    name: str


class Greeter(Agent):
    role = "greeter"

    @handler
    async def greet(self, msg: Greet, ctx: TaskContext) -> str:
        return f"Hello, {msg.name}! (handled by {ctx.agent.agent_id})"


def make_agents() -> list[Agent]:
    """Factory for ``python -m swarm.queen --serve --agents examples.quickstart:make_agents``."""
    return [Greeter(concurrency=2)]


async def main() -> None:
    async with Swarm(agents=make_agents()) as swarm:
        handle = await swarm.submit(Greet(name="bee"))
        print(await handle.result(timeout=5))


if __name__ == "__main__":
    asyncio.run(main())
