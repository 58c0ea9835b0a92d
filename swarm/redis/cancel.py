"""Cancelling a task the Redis runtime has not handed to any agent yet.

A task waits as an entry of its role's stream for its priority band until
the role's consumer group reads it. One script finds the entry among those
the group has not read (after its ``last-delivered-id``) and deletes it:
atomic with the group's reads, so either an agent got the task or nobody
ever will. The record then ends ``failed`` ("cancelled"); the submitter's
waiter is resolved from it. A task already read by an agent (running,
waiting for a retry, or redelivered) is not cancelled.

Example:
    >>> from swarm.redis.cancel import CANCEL_QUEUED
    >>> "XDEL" in CANCEL_QUEUED
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from swarm import constants as C
from swarm.ledger import TaskRecord, TaskState

if TYPE_CHECKING:
    from swarm.redis.core import Core

__all__ = ["CANCEL_QUEUED", "cancel_queued"]

#: Most unread entries one stream is searched through.
SCAN_LIMIT = 100_000

# KEYS: the role's band streams. ARGV: group, task id, scan limit. Returns 1
# when the task's entry was unread and is deleted, else 0.
CANCEL_QUEUED = """
local group, needle, cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local start = '-'
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[i])) do
      local name, last
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1] end
        if g[j] == 'last-delivered-id' then last = g[j + 1] end
      end
      if name == group then start = '(' .. last end
    end
    for _, e in ipairs(redis.call('XRANGE', KEYS[i], start, '+', 'COUNT', cap)) do
      local fields = e[2]
      for j = 2, #fields, 2 do
        if string.find(fields[j], needle, 1, true) then
          redis.call('XDEL', KEYS[i], e[1])
          return 1
        end
      end
    end
  end
end
return 0
"""


async def cancel_queued(core: Core, record: TaskRecord) -> TaskRecord | None:
    """Delete ``record``'s unread stream entry and end it ``failed``; the new record, or None.

    Only a task routed to a role (``role:<name>``) waits in a role stream.
    """
    if record.state is not TaskState.QUEUED or not record.recipient.startswith("role:"):
        return None
    role = record.recipient[len("role:"):]
    streams = [C.task_stream(role, band, core.prefix) for band in C.PRIORITY_BANDS]
    deleted = await core.redis.eval(
        CANCEL_QUEUED, len(streams), *streams, C.TASK_GROUP, record.task_id, SCAN_LIMIT
    )
    if not int(deleted):
        return None
    final = await core.ledger.update(record.task_id, TaskState.FAILED, error="cancelled")
    if final is not None and core.writer is not None:
        # Finished, so history: it leaves Redis after the retention.
        core.writer.add(final.task_id, msgspec.msgpack.encode(final))
    return final
