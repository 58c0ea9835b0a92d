"""Synthesis: group recent findings by topic and summarise each group.

The :class:`Summarizer` is pluggable; :class:`ExtractiveSummarizer` is the
deterministic offline default (no network): it keeps the sentences whose
words are most frequent across the group, in their original order.

Example:
    >>> import asyncio
    >>> from memory.records import Memory
    >>> mems = [Memory(id="1", namespace="n", content="Token X unlocks in May. Team is anon."),
    ...         Memory(id="2", namespace="n", content="Token X unlock is 20% of supply.")]
    >>> print(asyncio.run(ExtractiveSummarizer(max_sentences=1).summarize("n", mems)))
    n (2 findings): Token X unlocks in May.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from memory.embedding import tokenize
from memory.records import Memory, MemoryKind

__all__ = ["ExtractiveSummarizer", "Summarizer", "TopicGroup", "group_by_topic"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
# Words too common to say what a group is about.
_STOP = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was "
    "were will with".split()
)


@runtime_checkable
class Summarizer(Protocol):
    """Writes the text of a synthesis memory from its sources."""

    async def summarize(self, topic: str, memories: Sequence[Memory]) -> str:
        """Summarise ``memories`` (all about ``topic``) in a few sentences."""
        ...


class ExtractiveSummarizer:
    """Deterministic extractive summariser; never calls the network.

    Args:
        max_sentences: Sentences kept.
        max_chars: Hard cap on the summary length.
    """

    def __init__(self, *, max_sentences: int = 3, max_chars: int = 2000) -> None:
        self.max_sentences = max_sentences
        self.max_chars = max_chars

    async def summarize(self, topic: str, memories: Sequence[Memory]) -> str:
        """Pick the most representative sentences across ``memories``."""
        sentences: list[tuple[int, str]] = []
        freq: Counter[str] = Counter()
        seen: set[str] = set()
        for memory in sorted(memories, key=lambda m: m.id):
            for text in _SENTENCE.split(memory.content.strip()):
                text = text.strip()
                key = text.lower()
                if text and key not in seen:
                    seen.add(key)
                    sentences.append((len(sentences), text))
            freq.update({w for w in tokenize(memory.content) if w not in _STOP})

        def weight(item: tuple[int, str]) -> tuple[float, int]:
            words = [w for w in tokenize(item[1]) if w not in _STOP]
            score = sum(freq[w] for w in words) / (len(words) + 1) if words else 0.0
            return (-score, item[0])

        best = sorted(sorted(sentences, key=weight)[: self.max_sentences])
        body = " ".join(text for _, text in best)
        summary = f"{topic} ({len(memories)} findings): {body}"
        return summary if len(summary) <= self.max_chars else summary[: self.max_chars - 1] + "…"


class TopicGroup:
    """Findings that share a topic: a namespace plus their most common tag.

    Attributes:
        namespace: Namespace of the findings (and of the synthesis).
        tag: The shared tag, or empty when the findings have none.
        memories: The findings, in id order.
    """

    __slots__ = ("memories", "namespace", "tag")

    def __init__(self, namespace: str, tag: str, memories: list[Memory]) -> None:
        self.namespace = namespace
        self.tag = tag
        self.memories = memories

    @property
    def topic(self) -> str:
        """Human-readable topic label."""
        return f"{self.namespace}#{self.tag}" if self.tag else self.namespace


def group_by_topic(memories: Sequence[Memory], *, min_size: int = 2) -> list[TopicGroup]:
    """Group findings by namespace and their most frequent tag; drop small groups.

    Each finding joins one group: that of its tag used most often in the batch
    (ties broken alphabetically), so groups do not overlap.

    Example:
        >>> ms = [Memory(id=str(i), namespace="n", content="c", tags=t)
        ...       for i, t in enumerate([("a",), ("a", "b"), ("b",)])]
        >>> [(g.topic, [m.id for m in g.memories]) for g in group_by_topic(ms)]
        [('n#a', ['0', '1'])]
    """
    findings = [m for m in memories if m.kind is MemoryKind.FINDING]
    tag_count: Counter[tuple[str, str]] = Counter(
        (m.namespace, t) for m in findings for t in m.tags
    )
    groups: dict[tuple[str, str], list[Memory]] = defaultdict(list)
    for memory in sorted(findings, key=lambda m: m.id):
        tag = min(memory.tags, key=lambda t: (-tag_count[(memory.namespace, t)], t), default="")
        groups[(memory.namespace, tag)].append(memory)
    return [
        TopicGroup(ns, tag, mems)
        for (ns, tag), mems in sorted(groups.items())
        if len(mems) >= min_size
    ]
