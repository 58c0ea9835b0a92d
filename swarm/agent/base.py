"""The Agent base class: subclass it and declare handlers with :func:`handler`.

Handlers are dispatched on the payload's message type. They receive the
decoded message and a :class:`~swarm.agent.context.TaskContext` giving
``send``, ``publish`` and a bound logger; they never see transport code.

Example:
    >>> from swarm import Agent, Message, handler
    >>> class Add(Message):
    ...     a: int
    ...     b: int
    >>> class Adder(Agent):
    ...     role = "adder"
    ...     @handler
    ...     async def add(self, msg: Add, ctx) -> int:
    ...         return msg.a + msg.b
    >>> sorted(Adder.capabilities)
    ['Add']
"""

from __future__ import annotations

import enum
import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from swarm.agent.context import TaskContext
from swarm.errors import ConfigError, Reject
from swarm.messages import Command, CommandAction, Envelope, Message, new_id

if TYPE_CHECKING:
    from swarm.agent.context import AgentContext
    from swarm.codec import Codec

__all__ = ["Agent", "AgentState", "handler"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_HANDLER_ATTR = "__swarm_handler__"


class AgentState(enum.StrEnum):
    """Lifecycle of an agent."""

    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    PAUSED = "paused"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class _Handler:
    message_type: type[Message]
    func: Callable[..., Awaitable[Any]]
    takes_context: bool


@overload
def handler(func: F, /) -> F: ...
@overload
def handler(message_type: type[Message], /) -> Callable[[F], F]: ...
def handler(arg: Any, /) -> Any:
    """Declare an agent method as the handler of one message type.

    The type is read from the annotation of the first parameter after
    ``self``, or given explicitly as ``@handler(MessageType)``. The method may
    take a second parameter, the :class:`~swarm.agent.context.TaskContext`.
    Its return value (a :class:`~swarm.messages.Message` or builtin data)
    becomes the task's result.

    Example:
        >>> class Echo(Message):
        ...     text: str
        >>> class Echoer(Agent):
        ...     @handler(Echo)
        ...     async def echo(self, msg, ctx):
        ...         return msg.text
        >>> Echoer.role
        'echoer'
    """
    if isinstance(arg, type) and issubclass(arg, Message):

        def mark(func: F) -> F:
            setattr(func, _HANDLER_ATTR, arg)
            return func

        return mark
    if not inspect.iscoroutinefunction(arg):
        raise ConfigError(f"@handler needs an async def method, got {arg!r}")
    setattr(arg, _HANDLER_ATTR, None)
    return arg


def _resolve(cls: type, name: str, func: Callable[..., Any]) -> _Handler:
    explicit = getattr(func, _HANDLER_ATTR)
    params = list(inspect.signature(func).parameters.values())[1:]
    if not params:
        raise ConfigError(f"{cls.__name__}.{name} must take the message as a parameter")
    if explicit is None:
        try:
            hints = typing.get_type_hints(func)
        except (NameError, TypeError) as exc:
            raise ConfigError(
                f"cannot resolve the message type of {cls.__name__}.{name} ({exc}); "
                "use @handler(MessageType)"
            ) from exc
        explicit = hints.get(params[0].name)
        if not (isinstance(explicit, type) and issubclass(explicit, Message)):
            raise ConfigError(
                f"{cls.__name__}.{name}: first parameter must be annotated with a Message "
                f"subclass, got {explicit!r}"
            )
    return _Handler(explicit, func, takes_context=len(params) >= 2)


def _default_role(name: str) -> str:
    base = name[:-5] if name.endswith("Agent") and len(name) > 5 else name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower()


class Agent:
    """Base class of every agent.

    Class attributes:
        role: The role name (defaults to the class name in snake case, without
            an ``Agent`` suffix). Replicas of a role share its work.
        capabilities: Task types this agent handles (derived from its handlers,
            plus any declared extra tags).
        subscriptions: Topics whose events this agent receives.
        concurrency: Default number of tasks one instance runs at once.

    Args:
        agent_id: Unique id; defaults to ``<role>-<random>``.
        concurrency: Overrides the class default.
    """

    role: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    subscriptions: ClassVar[tuple[str, ...]] = ()
    concurrency: int = 1
    _handlers: ClassVar[dict[str, _Handler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "role" not in cls.__dict__ or not cls.__dict__["role"]:
            cls.role = _default_role(cls.__name__)
        handlers: dict[str, _Handler] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if callable(value) and hasattr(value, _HANDLER_ATTR):
                    h = _resolve(klass, name, value)
                    handlers[h.message_type.type_name] = h
        cls._handlers = handlers
        cls.capabilities = frozenset(handlers) | frozenset(cls.__dict__.get("capabilities", ()))

    def __init__(self, *, agent_id: str | None = None, concurrency: int | None = None) -> None:
        self.agent_id = agent_id or f"{self.role}-{new_id()[-8:]}"
        if concurrency is not None:
            if concurrency < 1:
                raise ConfigError("concurrency must be at least 1")
            self.concurrency = concurrency
        self.state = AgentState.STOPPED
        self.inflight = 0
        self.processed = 0
        self.failed = 0
        self._context: AgentContext | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.agent_id} {self.state.value}>"

    # -- what subclasses may override ------------------------------------
    async def on_start(self) -> None:
        """Called once the agent is bound to a runtime, before it gets work."""

    async def on_stop(self) -> None:
        """Called when the agent stops, after its in-flight work finished."""

    # -- what handlers and hooks use -------------------------------------
    @property
    def context(self) -> AgentContext:
        """The agent's context (``send``, ``publish``, ``log``); set by the runtime."""
        if self._context is None:
            raise ConfigError(f"agent {self.agent_id} is not registered with a runtime")
        return self._context

    def handles(self, type_name: str) -> bool:
        """Whether this agent has a handler for a message type."""
        return type_name in self._handlers

    @property
    def accepting(self) -> bool:
        """Whether the agent takes new tasks now."""
        return self.state is AgentState.READY or self.state is AgentState.BUSY

    # -- what runtimes call ----------------------------------------------
    def obey(self, command: Command) -> CommandAction | None:
        """Apply a Queen command's state change to this agent.

        Returns:
            The action, for the runtime's own follow-up (refill after a resume,
            hand back queued work on drain, unregister on shutdown), or None
            when the command is addressed to other agents.
        """
        if (command.role and command.role != self.role) or (
            command.agent_id and command.agent_id != self.agent_id
        ):
            return None
        action = command.action
        if action is CommandAction.PAUSE and self.accepting:
            self.state = AgentState.PAUSED
        elif action is CommandAction.RESUME and self.state is AgentState.PAUSED:
            self.state = AgentState.BUSY if self.inflight else AgentState.READY
        elif action is CommandAction.DRAIN:
            self.state = AgentState.DRAINING
        return action

    async def startup(self, context: AgentContext) -> None:
        """Bind the agent to a runtime context and run :meth:`on_start`."""
        self._context = context
        self.state = AgentState.STARTING
        try:
            await self.on_start()
        except BaseException:
            self.state = AgentState.FAILED
            raise
        self.state = AgentState.READY

    async def shutdown(self) -> None:
        """Run :meth:`on_stop` and mark the agent stopped."""
        try:
            await self.on_stop()
        finally:
            if self.state is not AgentState.FAILED:
                self.state = AgentState.STOPPED

    def plain_handler(
        self, type_name: str
    ) -> tuple[Callable[..., Awaitable[Any]], type[Message]] | None:
        """The handler function and message type for ``type_name``, if calling it is all
        :meth:`dispatch` would do.

        That is: a handler exists, it takes no context, and :meth:`dispatch` is
        not overridden. A runtime may then decode the payload and call
        ``func(agent, message)`` itself, sparing a frame or two per task; for
        anything else (None) it calls :meth:`dispatch`.
        """
        h = self._handlers.get(type_name)
        if h is None or h.takes_context or type(self).dispatch is not Agent.dispatch:
            return None
        return h.func, h.message_type

    def dispatch(
        self, envelope: Envelope, ctx: TaskContext | AgentContext, codec: Codec
    ) -> Awaitable[Any]:
        """Decode a task or event and return its handler's coroutine, for the runtime to await.

        Not itself a coroutine: one frame less per task on the hot path.

        Args:
            envelope: The task or event.
            ctx: The delivery's context, or the agent's context, from which
                the delivery's context is made only for a handler that takes one.
            codec: Decodes the payload.

        Raises:
            Reject: No handler for the type (a routing mistake, not retryable).
            DecodeError: The payload does not fit the handler's type.
        """
        h = self._handlers.get(envelope.type)
        if h is None:
            raise Reject(f"agent {self.agent_id} has no handler for {envelope.type!r}")
        message = codec.decode_payload(envelope, h.message_type)
        if h.takes_context:
            if not isinstance(ctx, TaskContext):
                ctx = TaskContext(ctx, envelope)
            return h.func(self, message, ctx)
        return h.func(self, message)
