"""Typed messages and the envelope that carries them.

Users declare message types as subclasses of :class:`Message` (a frozen
``msgspec.Struct``); handlers are dispatched on those types. Every hop carries
an :class:`Envelope` with the routing, delivery and tracing metadata; the
payload inside it stays encoded (``msgspec.Raw``) until the receiver decodes it
into the handler's declared type.

Example:
    >>> from swarm.messages import Message, message_type
    >>> class Ping(Message):
    ...     text: str
    >>> message_type(Ping)
    'Ping'
"""

from __future__ import annotations

import enum
import itertools
import os
import time
from typing import Any, ClassVar, dataclass_transform

import msgspec

__all__ = [
    "Command",
    "CommandAction",
    "Envelope",
    "Kind",
    "Message",
    "UnknownMessage",
    "lookup_message_type",
    "message_type",
    "new_id",
]


class Kind(enum.StrEnum):
    """What an envelope is for."""

    TASK = "task"
    RESULT = "result"
    EVENT = "event"
    COMMAND = "command"


# Tells type checkers that subclasses are frozen and keyword-only too, so a
# plain ``class Ping(Message): ...`` passes ``mypy --strict`` (msgspec's own
# transform would demand ``frozen=True`` on every subclass).
@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(msgspec.field,))
class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base class of typed message payloads.

    The wire name of a subclass is its class name, or the ``type_name`` class
    variable when set. Subclasses register themselves so that a receiver can
    decode any known type by name.

    Example:
        >>> class Scrape(Message):
        ...     type_name: ClassVar[str] = "tge.scrape"
        ...     url: str
        >>> message_type(Scrape)
        'tge.scrape'
    """

    type_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("type_name"):
            cls.type_name = cls.__name__
        # Later definitions win: a module re-imported (or a test redefining a
        # class) must not make decoding fail.
        _REGISTRY[cls.type_name] = cls


_REGISTRY: dict[str, type[Message]] = {}


def message_type(cls: type[Message]) -> str:
    """Return the wire name of a message class."""
    return cls.type_name


def lookup_message_type(name: str) -> type[Message] | None:
    """Return the registered message class for a wire name, if any."""
    return _REGISTRY.get(name)


class UnknownMessage(Message, frozen=True, kw_only=True):
    """A payload whose type is not registered in this process, kept as plain data.

    Attributes:
        name: The wire name of the payload's type.
        data: The decoded payload as builtin types.
    """

    type_name: ClassVar[str] = "swarm.unknown"
    name: str
    data: Any


class CommandAction(enum.StrEnum):
    """Actions the Queen broadcasts on the queen-commands channel."""

    PAUSE = "pause"
    RESUME = "resume"
    DRAIN = "drain"
    SHUTDOWN = "shutdown"


class Command(Message, frozen=True, kw_only=True):
    """A control command from the Queen to agents.

    Attributes:
        action: What to do.
        role: Only agents of this role obey it (all when empty).
        agent_id: Only this agent obeys it (all when empty).
    """

    type_name: ClassVar[str] = "swarm.command"
    action: CommandAction
    role: str = ""
    agent_id: str = ""


# A per-process random node part and a counter make ids unique across
# processes and hosts; the leading millisecond clock makes them sort by time.
# (python-ulid costs ~10 us per id, half of the in-process per-task budget.)
_NODE = int.from_bytes(os.urandom(5), "big")
_NODE_HEX = f"{_NODE:010x}"
_COUNTER_MASK = 0xFFFFFFFFFF  # the counter part: 40 bits, 10 hex digits
# Hex digits come from this table of 3-digit strings (12 bits each) rather
# than from formatting, which costs several thousand instructions per call:
# the counter's low bits per id, the clock's low bits per millisecond.
_LOW_HEX = tuple(f"{i:03x}" for i in range(4096))

# A C-level counter: ``next()`` on it is atomic, so ids stay unique when
# threads make them too (a read-modify-write of a global would not be).
_COUNTER = itertools.count(int.from_bytes(os.urandom(3), "big"))
# Caches, each one tuple read and replaced whole, so that a prefix never pairs
# with another id's counter bits (threads make ids too):
# per millisecond: (its bounds ``ms`` and ``ms + 1`` as floats, so that a hit
# needs no ``int()``; the counter's high bits; the id's first 29 digits);
_cached: tuple[float, float, int, str] = (0.0, 0.0, -1, "")
# per 4096 ms or 4096 ids: (ms >> 12, its 9 digits, the counter's high bits,
# node and high bits as 17 digits). A producer slower than one id per
# millisecond (or a process slowed down ~50x under callgrind) misses the
# first cache on every id; this keeps the miss cheap.
_coarse: tuple[int, str, int, str] = (-1, "", -1, "")


def new_id(now: float | None = None) -> str:
    """Return a new unique id that sorts by creation time (32 hex digits).

    Layout: milliseconds since the epoch (12 digits), a random per-process
    node part (10), a counter (10).

    Args:
        now: The creation time (unix seconds), when the caller has read the
            clock already; default: now.

    Example:
        >>> a, b = new_id(), new_id()
        >>> a != b and len(a) == 32
        True
    """
    global _cached, _coarse
    n = next(_COUNTER) & _COUNTER_MASK
    x = (time.time() if now is None else now) * 1000
    lo, hi, high, prefix = _cached
    # int(x) == ms exactly when ms <= x < ms + 1.
    if lo <= x < hi and high == n >> 12:
        return prefix + _LOW_HEX[n & 0xFFF]
    ms = int(x)
    high = n >> 12
    coarse = _coarse
    if coarse[0] != ms >> 12 or coarse[2] != high:
        coarse = _coarse = (ms >> 12, f"{ms >> 12:09x}", high, f"{_NODE_HEX}{high:07x}")
    prefix = coarse[1] + _LOW_HEX[ms & 0xFFF] + coarse[3]
    lo = ms * 1.0
    _cached = (lo, lo + 1.0, high, prefix)
    return prefix + _LOW_HEX[n & 0xFFF]


class Envelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """The unit every transport carries.

    Untracked by the garbage collector (``gc=False``): every field is atomic.

    Attributes:
        id: Sortable unique id (ULID). For a task, the task id.
        kind: Task, result, event or command.
        type: Wire name of the payload's message type.
        sender: Id of the agent or node that sent it.
        recipient: ``agent:<id>``, ``role:<name>``, ``topic:<name>``, or empty
            for "any agent able to handle ``type``".
        payload: The encoded payload (msgpack), decoded by the receiver.
        priority: Higher runs first under backlog.
        attempt: 1 on first delivery, incremented on every redelivery.
        max_attempts: Past this many attempts the task is dead-lettered.
        deadline: Unix time after which the task must not start.
        idempotency_key: A second submit with the same key returns the first task.
        created_at: Unix time of creation.
        reply_to: Node whose inbox receives the result.
        correlation_id: For a result, the task id it answers.
        error: For a failed result, the error text.
        ok: For a result, whether the task succeeded.
        traceparent: W3C trace context of the sending span.
        tracestate: W3C vendor trace state.
        epoch: Leadership epoch of the Queen that dispatched it (fencing token).
        signature: Slot for a message signature.
    """

    id: str
    kind: Kind
    type: str
    sender: str
    recipient: str = ""
    payload: msgspec.Raw = msgspec.Raw(b"\xc0")
    priority: int = 0
    attempt: int = 1
    max_attempts: int = 3
    deadline: float | None = None
    idempotency_key: str | None = None
    created_at: float = 0.0
    reply_to: str | None = None
    correlation_id: str | None = None
    error: str | None = None
    ok: bool = True
    traceparent: str | None = None
    tracestate: str | None = None
    epoch: int = 0
    signature: bytes | None = None

    def expired(self, now: float | None = None) -> bool:
        """Whether the deadline has passed."""
        return (
            self.deadline is not None and (now if now is not None else time.time()) > self.deadline
        )

    @property
    def role(self) -> str | None:
        """The role named by ``recipient``, if it names one."""
        return self.recipient[5:] if self.recipient.startswith("role:") else None

    @property
    def agent_id(self) -> str | None:
        """The agent id named by ``recipient``, if it names one."""
        return self.recipient[6:] if self.recipient.startswith("agent:") else None
