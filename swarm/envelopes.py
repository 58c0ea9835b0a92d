"""Building envelopes: the one place a task or broadcast envelope is stamped.

Runtimes (``send``, ``publish``) and the Queen's intake all build through
these, so every envelope carries the same fields: a fresh id, the encoded
payload, creation time and the W3C trace context of the sending span.

Example:
    >>> from swarm.codec import Codec
    >>> from swarm.envelopes import task_envelope
    >>> from swarm.messages import Message
    >>> class Ping(Message):
    ...     n: int
    >>> env = task_envelope(Codec(), Ping(n=1), sender="q1", to="role:pinger", max_attempts=3)
    >>> (env.kind.value, env.type, env.recipient, env.attempt)
    ('task', 'Ping', 'role:pinger', 1)
"""

from __future__ import annotations

import time

from swarm import tracing
from swarm.codec import Codec
from swarm.messages import Command, Envelope, Kind, Message, new_id
from swarm.tracing import current_traceparent, submit_span

__all__ = ["broadcast_envelope", "task_envelope"]

# ``Kind.TASK`` goes through the enum metaclass's ``__getattr__`` hook per
# read; a module global does not.
_TASK = Kind.TASK


def task_envelope(
    codec: Codec,
    message: Message,
    sender: str,
    max_attempts: int,
    to: str = "",
    priority: int = 0,
    deadline: float | None = None,
    idempotency_key: str | None = None,
    reply_to: str | None = None,
    epoch: int = 0,
    now: float | None = None,
) -> Envelope:
    """A task envelope for ``message``.

    Arguments may be given by position (in this order) on hot paths: a call
    with a dozen keywords costs about a thousand instructions more.

    Raises:
        EncodeError, MessageTooLarge: The payload cannot be encoded within the limit.
    """
    if now is None:
        now = time.time()
    # The flag itself first: no call per task while tracing is off.
    if not (
        tracing._enabled or priority or deadline is not None or idempotency_key is not None or epoch
    ):
        # Fields at their defaults are left out: msgspec matches every keyword
        # it is given, ~12 ns each, so the common task is cheaper built without them.
        return Envelope(
            id=new_id(now),
            kind=_TASK,
            type=message.type_name,
            sender=sender,
            recipient=to,
            payload=codec.encode_payload(message),
            max_attempts=max_attempts,
            created_at=now,
            reply_to=reply_to,
        )
    task_id = new_id(now)
    traceparent = tracestate = None
    if tracing._enabled:
        # The submit span: the envelope carries it, so the task's spans in
        # other processes (and its own child tasks) are its descendants.
        with submit_span(message.type_name, to, task_id):
            traceparent, tracestate = current_traceparent()
    return Envelope(
        id=task_id,
        kind=_TASK,
        type=message.type_name,
        sender=sender,
        recipient=to,
        payload=codec.encode_payload(message),
        priority=priority,
        max_attempts=max_attempts,
        deadline=deadline,
        idempotency_key=idempotency_key,
        created_at=now,
        reply_to=reply_to,
        traceparent=traceparent,
        tracestate=tracestate,
        epoch=epoch,
    )


def broadcast_envelope(codec: Codec, topic: str, message: Message, *, sender: str) -> Envelope:
    """An event (or, for a :class:`~swarm.messages.Command`, a command) for ``topic``.

    Raises:
        EncodeError, MessageTooLarge: It cannot be encoded within the limit.
    """
    traceparent, tracestate = current_traceparent()
    env = Envelope(
        id=new_id(),
        kind=Kind.COMMAND if isinstance(message, Command) else Kind.EVENT,
        type=message.type_name,
        sender=sender,
        recipient=f"topic:{topic}",
        payload=codec.encode_payload(message),
        created_at=time.time(),
        traceparent=traceparent,
        tracestate=tracestate,
    )
    codec.encode(env)  # the whole envelope within the limit, checked at the sender
    return env
