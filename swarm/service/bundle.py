"""Bundles: what a swarm process runs, found through ``--agents`` or an entry point.

A bundle is the agents of an application and, optionally, a job that drives
them to an end (the stock TGE pipeline ships one) and command-line options
of its own. ``--agents module:factory`` names a callable returning a
:class:`Bundle`, one :class:`~swarm.agent.base.Agent` or a list of them.
Without ``--agents``, the ``queenswarm.agents`` entry point named ``default``
is used: the framework finds its bundled application the way it finds a
user's, and never imports it by name.

Example:
    >>> from swarm import Agent, Message, handler
    >>> from swarm.service.bundle import Bundle
    >>> class Shout(Message):
    ...     text: str
    >>> class Shouter(Agent):
    ...     @handler
    ...     async def shout(self, msg: Shout) -> str:
    ...         return msg.text.upper()
    >>> b = Bundle(name="shouting", agents=lambda: [Shouter(concurrency=8)])
    >>> [a.role for a in b.make_agents()], b.job is None
    (['shouter'], True)
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from swarm.agent.base import Agent
from swarm.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "Bundle", "JobOutcome", "Progress", "load_bundle"]

#: Entry-point group that names bundles (``default`` is used without ``--agents``).
ENTRY_POINT_GROUP = "queenswarm.agents"
#: Called as ``progress(stage, done, total, detail)`` while a job runs.
Progress = Callable[[str, int, int, str], None]


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What a bundle's job reports.

    Attributes:
        ok: Whether the job succeeded (exit status 0).
        text: The report for people.
        data: The report for machines (``--json``), any msgspec-encodable value.
    """

    ok: bool
    text: str
    data: Any


#: ``job(swarm, options, progress)``: run to the end against a started swarm.
Job = Callable[[Any, argparse.Namespace, Progress], Awaitable[JobOutcome]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """An application: its agents, and optionally a job and options of its own.

    Attributes:
        name: Shown in messages.
        agents: Returns a fresh list of agents each call.
        job: Run by ``python -m swarm.queen`` without ``--serve``.
        add_arguments: Adds the job's own options to the Queen's parser.
    """

    name: str
    agents: Callable[[], Sequence[Agent]]
    job: Job | None = None
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None

    def make_agents(self) -> list[Agent]:
        """The agents, checked.

        Raises:
            ConfigError: The factory gave no agents, or something else.
        """
        made = list(self.agents())
        if not made or not all(isinstance(a, Agent) for a in made):
            raise ConfigError(f"bundle {self.name!r} must make a non-empty list of Agent instances")
        return made


def _import(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import agents module {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"{spec!r}: {module_name} has no attribute {attr!r}")
    return obj


def _as_bundle(spec: str, obj: Any) -> Bundle:
    if isinstance(obj, Bundle):
        return obj
    if isinstance(obj, type) and issubclass(obj, Agent):
        cls = obj
        return Bundle(name=spec, agents=lambda: [cls()])
    if not callable(obj) or isinstance(obj, type):
        raise ConfigError(f"{spec!r} is neither a Bundle nor a callable returning agents")
    try:
        made = obj()
    except Exception as exc:
        raise ConfigError(f"{spec!r} failed to make agents: {type(exc).__name__}: {exc}") from exc
    if isinstance(made, Bundle):
        return made
    first: list[Any] = [made] if isinstance(made, Agent) else list(made)
    factory = obj

    def agents() -> list[Agent]:
        # The agents made while probing serve the first call: a factory runs once per process.
        if first:
            out, first[:] = list(first), []
            return out
        again = factory()
        return [again] if isinstance(again, Agent) else list(again)

    return Bundle(name=spec, agents=agents)


def load_bundle(spec: str | None) -> Bundle:
    """The bundle ``spec`` names, or the default entry point's when ``spec`` is None.

    Raises:
        ConfigError: Nothing importable by that name, or no default installed.
    """
    if spec is not None:
        return _as_bundle(spec, _import(spec))
    found = entry_points(group=ENTRY_POINT_GROUP, name="default")
    if not found:
        raise ConfigError(
            f"no --agents given and no {ENTRY_POINT_GROUP!r} entry point named 'default' is "
            "installed (pass --agents module:factory, or reinstall: pip install -e .)"
        )
    ep = next(iter(found))
    try:
        obj = ep.load()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the default agents {ep.value!r}: {exc}") from exc
    return _as_bundle(ep.value, obj)
