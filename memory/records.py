"""Typed value objects of the memory coordinator, and input validation.

A :class:`Memory` is immutable; feedback and access produce new versions
(``msgspec.structs.replace``). Validation happens before anything is written,
so bad input is rejected with :class:`~swarm.errors.MemoryValidationError`
and nothing half-written is left behind.

Example:
    >>> from memory.records import validate_namespace
    >>> validate_namespace("research.tge")
    'research.tge'
    >>> validate_namespace("Bad Namespace")
    Traceback (most recent call last):
    ...
    swarm.errors.MemoryValidationError: namespace 'Bad Namespace' ...
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable
from typing import ClassVar

import msgspec

from swarm.errors import MemoryValidationError
from swarm.messages import Message

__all__ = [
    "MAX_CONTENT_BYTES",
    "Memory",
    "MemoryEvent",
    "MemoryFilter",
    "MemoryKind",
    "MemoryNotice",
    "RecallHit",
    "effective_score",
    "namespace_matches",
    "validate_confidence",
    "validate_content",
    "validate_namespace",
    "validate_tags",
    "validate_ttl",
]

#: Default largest content accepted, in UTF-8 bytes.
MAX_CONTENT_BYTES = 32 * 1024

# Dotted lowercase segments: "research", "research.tge-2024", "agent_x.notes".
_NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}(?:\.[a-z0-9][a-z0-9_-]{0,62}){0,7}")
_TAG = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
_MAX_TAGS = 32
# Namespaces and tags seen valid (validity depends on the string alone): a
# store's few names skip their regular expressions. Bounded; past it, matched.
_VALID: set[str] = set()
_VALID_TAGS: set[str] = set()
_VALID_MAX = 10_000


class MemoryKind(enum.StrEnum):
    """What a memory is."""

    FINDING = "finding"
    OBSERVATION = "observation"
    SYNTHESIS = "synthesis"


# gc=False: a Memory holds only strings, numbers, bytes and tuples of
# strings, so it cannot be part of a reference cycle; untracked, the thousands
# the hot path makes and keeps (caches, the index) cost the cyclic collector
# nothing (about 2% of a Redis hot-tier operation). The same for RecallHit.
class Memory(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One stored memory with its provenance.

    Attributes:
        id: Time-sortable unique id (:func:`swarm.messages.new_id`).
        namespace: Dotted lowercase name, e.g. ``research.tge``.
        content: The text.
        kind: Finding, observation or synthesis.
        author: Id of the agent (or user) that stored it.
        task_id: Task during which it was learnt, if any.
        trace_id: Trace it was learnt in, if any.
        tags: Sorted, de-duplicated lowercase tags.
        confidence: The author's confidence, 0..1.
        created_at: Unix time of creation.
        expires_at: Unix time after which it is forgotten, if any.
        score: Feedback score as of ``score_at`` (decays towards 0 over time).
        score_at: Unix time ``score`` was last set.
        sources: Ids of the memories a synthesis was made from.
        vector: The embedding (little-endian float32), persisted with the memory.
    """

    id: str
    namespace: str
    content: str
    kind: MemoryKind = MemoryKind.FINDING
    author: str = ""
    task_id: str | None = None
    trace_id: str | None = None
    tags: tuple[str, ...] = ()
    confidence: float = 1.0
    created_at: float = 0.0
    expires_at: float | None = None
    score: float = 0.0
    score_at: float = 0.0
    sources: tuple[str, ...] = ()
    vector: bytes = b""

    def expired(self, now: float) -> bool:
        """Whether the TTL has run out at ``now``."""
        return self.expires_at is not None and now >= self.expires_at


class MemoryFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Restricts recall, catch-up and subscriptions. Empty fields match everything.

    Attributes:
        namespaces: Match these namespaces and their descendants
            (``research`` matches ``research.tge``).
        kinds: Match only these kinds.
        tags: Match memories carrying at least one of these tags.
        authors: Match only these authors.
        min_confidence: Match only memories at least this confident.
        since: Match only memories created at or after this Unix time.

    Example:
        >>> f = MemoryFilter(namespaces=("research",), tags=("tge",))
        >>> f.matches(Memory(id="1", namespace="research.tge", content="x", tags=("tge",)))
        True
    """

    namespaces: tuple[str, ...] = ()
    kinds: tuple[MemoryKind, ...] = ()
    tags: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    min_confidence: float = 0.0
    since: float = 0.0

    def matches(self, memory: Memory) -> bool:
        """Whether ``memory`` passes this filter."""
        if self.namespaces and not any(
            namespace_matches(ns, memory.namespace) for ns in self.namespaces
        ):
            return False
        if self.kinds and memory.kind not in self.kinds:
            return False
        if self.tags and not set(self.tags).intersection(memory.tags):
            return False
        if self.authors and memory.author not in self.authors:
            return False
        return memory.confidence >= self.min_confidence and memory.created_at >= self.since


class RecallHit(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One recall result.

    Attributes:
        memory: The memory (without its vector).
        score: Final rank score (higher is better).
        semantic: Cosine similarity of the embeddings.
        keyword: Fraction of the query's words found in the content.
        feedback: Decayed feedback score at recall time.
    """

    memory: Memory
    score: float
    semantic: float
    keyword: float
    feedback: float


class MemoryEvent(enum.StrEnum):
    """What a :class:`MemoryNotice` announces."""

    STORED = "stored"
    SCORED = "scored"
    FORGOTTEN = "forgotten"


class MemoryNotice(Message, frozen=True, kw_only=True):
    """Pushed on ``swarm:channels:memory-sync`` when a memory changes (at-most-once).

    Attributes:
        memory: The memory as of the change; for ``stored``, vector included so
            receivers need not re-embed it.
        origin: Id of the coordinator that made the change (it skips its own).
        event: Stored, scored (feedback) or forgotten.
    """

    type_name: ClassVar[str] = "memory.notice"
    memory: Memory
    origin: str
    event: MemoryEvent = MemoryEvent.STORED


def namespace_matches(pattern: str, namespace: str) -> bool:
    """Whether ``namespace`` is ``pattern`` or one of its descendants.

    Example:
        >>> namespace_matches("research", "research.tge"), namespace_matches("re", "research")
        (True, False)
    """
    return namespace == pattern or namespace.startswith(pattern + ".")


def effective_score(score: float, score_at: float, now: float, half_life: float) -> float:
    """Feedback score decayed exponentially with the given half-life (seconds).

    Example:
        >>> effective_score(1.0, 0.0, 3600.0, 3600.0)
        0.5
    """
    if score == 0.0 or half_life <= 0:
        return score
    return score * math.pow(0.5, max(0.0, now - score_at) / half_life)


def validate_namespace(namespace: str) -> str:
    """Return ``namespace`` if it is dotted lowercase segments, else raise."""
    if namespace.__class__ is str and namespace in _VALID:
        return namespace
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise MemoryValidationError(
            f"namespace {namespace!r} is not dotted lowercase segments "
            "([a-z0-9][a-z0-9_-]*, up to 8 segments of 63 characters), e.g. 'research.tge'"
        )
    if namespace.__class__ is str and len(_VALID) < _VALID_MAX:
        _VALID.add(namespace)
    return namespace


def validate_content(content: str, max_bytes: int = MAX_CONTENT_BYTES) -> str:
    """Return ``content`` if it is non-blank text within ``max_bytes`` UTF-8 bytes, else raise."""
    if not isinstance(content, str):
        raise MemoryValidationError(f"content must be str, not {type(content).__name__}")
    if not content.strip():
        raise MemoryValidationError("content is empty")
    if "\x00" in content:
        raise MemoryValidationError("content contains NUL characters")
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError:
        raise MemoryValidationError("content contains lone surrogate characters") from None
    if size > max_bytes:
        raise MemoryValidationError(
            f"content of {size} bytes exceeds the limit of {max_bytes} bytes"
        )
    return content


def validate_confidence(confidence: float) -> float:
    """Return ``confidence`` as a float if it is finite and within 0..1, else raise."""
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise MemoryValidationError(f"confidence must be a number, not {confidence!r}")
    value = float(confidence)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise MemoryValidationError(f"confidence must be finite and within 0..1, not {confidence}")
    return value


def validate_ttl(ttl: float | None) -> float | None:
    """Return ``ttl`` if it is None or a finite positive number of seconds, else raise."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise MemoryValidationError(f"ttl must be a number of seconds, not {ttl!r}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise MemoryValidationError(f"ttl must be finite and positive, not {ttl}")
    return float(ttl)


def validate_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Return the tags sorted and de-duplicated, or raise if one is malformed."""
    if isinstance(tags, str):
        raise MemoryValidationError("tags must be a collection of strings, not one string")
    out = sorted(set(tags))
    if len(out) > _MAX_TAGS:
        raise MemoryValidationError(f"at most {_MAX_TAGS} tags, got {len(out)}")
    for tag in out:
        if tag.__class__ is str and tag in _VALID_TAGS:
            continue
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise MemoryValidationError(
                f"tag {tag!r} is not lowercase [a-z0-9][a-z0-9_.:-]* of up to 64 characters"
            )
        if tag.__class__ is str and len(_VALID_TAGS) < _VALID_MAX:
            _VALID_TAGS.add(tag)
    return tuple(out)
