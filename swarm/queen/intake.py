"""Intake: turns a message into a routed, stamped task envelope and submits it.

Example:
    >>> from swarm.queen.intake import Intake
    >>> Intake.__name__
    'Intake'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from swarm.codec import Codec
from swarm.envelopes import task_envelope
from swarm.errors import LeadershipLost
from swarm.messages import Envelope, Message
from swarm.queen.handle import TaskHandle
from swarm.retry import RetryPolicy
from swarm.routing import Router
from swarm.runtime import Runtime

__all__ = ["Intake"]

_QUALIFIED_MAX = 1024


class Intake:
    """Builds task envelopes and submits them to the runtime.

    Args:
        runtime: Where tasks go.
        sender: The submitting node's id (the Queen's).
        router: Resolves recipients; used when it has a health filter,
            otherwise the runtime resolves ``to`` itself.
        retry_policy: Default attempt bound.
        max_attempts_by_type: Per message type overrides of the attempt bound.
        epoch: Returns the current leadership epoch (fencing token), 0 while not
            leading; when set, a Queen that does not lead dispatches nothing.
    """

    _runtime: Runtime
    # Read once per runtime rather than through two properties per task.
    _codec: Codec
    _node_id: str
    # The runtime's synchronous submit (the in-process one on its in-memory
    # ledger), which spares a coroutine per task; None means await ``submit``.
    _submit_nowait: Callable[[Envelope], str] | None

    def __init__(
        self,
        *,
        runtime: Runtime,
        sender: str,
        router: Router | None = None,
        retry_policy: RetryPolicy | None = None,
        max_attempts_by_type: Mapping[str, int] | None = None,
        epoch: Callable[[], int] | None = None,
    ) -> None:
        self.runtime = runtime
        self.sender = sender
        self.router = router or Router()
        self.retry_policy = retry_policy or runtime.retry_policy
        self.max_attempts_by_type = dict(max_attempts_by_type or {})
        self.epoch = epoch
        # Recipients seen already qualified ("role:x", "agent:y"): a set lookup
        # per task instead of a ``startswith`` call. Bounded: ids may be many.
        self._qualified: set[str] = set()

    @property
    def runtime(self) -> Runtime:
        """Where tasks go."""
        return self._runtime

    @runtime.setter
    def runtime(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._codec = runtime.codec
        self._node_id = runtime.node_id
        self._submit_nowait = getattr(runtime, "sync_submit", None)

    async def submit(
        self,
        message: Message,
        to: str = "",
        priority: int = 0,
        timeout: float | None = None,
        deadline: float | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
    ) -> TaskHandle:
        """Submit a task.

        Args:
            message: The task payload.
            to: ``agent:<id>``, ``role:<name>`` (or a bare role), or empty for
                any agent handling the type.
            priority: Higher runs first under backlog.
            timeout: Seconds from now after which the task must not start.
            deadline: Unix time after which the task must not start.
            idempotency_key: A repeated key returns the first task's handle.
            max_attempts: Overrides the policy's attempt bound.

        Raises:
            NoRouteError, MessageTooLarge, EncodeError, RuntimeClosed.
            LeadershipLost: Under an election, this Queen does not lead.
        """
        type_name = message.type_name
        epoch = 0
        if self.epoch is not None:
            epoch = self.epoch()
            if epoch == 0:
                # Under an election, 0 means "not leading": a standby or deposed
                # Queen must not dispatch (0 would also pass every fence).
                raise LeadershipLost("this Queen does not lead; it dispatches nothing")
        now = time.time()
        if timeout is not None:
            deadline = now + timeout if deadline is None else min(deadline, now + timeout)
        if to and to not in self._qualified:
            if not to.startswith(("agent:", "role:")):
                to = f"role:{to}"
            elif len(self._qualified) < _QUALIFIED_MAX:
                self._qualified.add(to)
        if self.router.healthy is not None and not to.startswith("agent:"):
            to = self.router.resolve(type_name, to, await self._runtime.directory())
        runtime = self._runtime
        env = task_envelope(  # by position: see task_envelope
            self._codec,
            message,
            self.sender,
            max_attempts
            or (self.max_attempts_by_type and self.max_attempts_by_type.get(type_name))
            or self.retry_policy.max_attempts,
            to,
            priority,
            deadline,
            idempotency_key,
            self._node_id,  # reply_to
            epoch,
            now,
        )
        submit_nowait = self._submit_nowait
        if submit_nowait is not None:
            return TaskHandle(submit_nowait(env), runtime)
        return TaskHandle(await runtime.submit(env), runtime)
