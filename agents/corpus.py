"""The bundled TGE corpus: simulated news and forum sources shipped as package data.

Sources are JSON (``agents/data/tge_corpus.json``); each may be flagged
``flaky_failures: N`` (its first N fetch attempts fail) or ``down: true``
(every fetch fails), so retries and the circuit breaker are exercised
deterministically, without a network. ``tge_ground_truth.json`` lists what the
pipeline must find.

Example:
    >>> from agents.corpus import load_corpus
    >>> corpus = load_corpus()
    >>> len(corpus.sources) >= 6
    True
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from swarm.errors import ConfigError, TransportError

__all__ = [
    "Corpus",
    "GroundTruth",
    "SourceSpec",
    "SourceUnavailable",
    "load_corpus",
    "load_ground_truth",
]

_CORPUS = "tge_corpus.json"
_TRUTH = "tge_ground_truth.json"


class SourceUnavailable(TransportError):
    """A (simulated) source did not answer; the fetch may be retried."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSpec:
    """One source of the corpus.

    Attributes:
        id: Source id.
        name: Display name.
        kind: ``news``, ``forum``, ``newsletter`` or ``exchange``.
        posts: Raw entries as shipped (some deliberately malformed).
        flaky_failures: The first this many fetch attempts fail.
        down: Every fetch fails.
    """

    id: str
    name: str
    kind: str
    posts: tuple[Any, ...]
    flaky_failures: int = 0
    down: bool = False

    def fetch(self, attempt: int) -> tuple[Any, ...]:
        """Return the raw entries, failing as the flags say for this attempt.

        Raises:
            SourceUnavailable: The simulated source is down for this attempt.
        """
        if self.down:
            raise SourceUnavailable(f"{self.id}: connection refused")
        if attempt <= self.flaky_failures:
            raise SourceUnavailable(f"{self.id}: HTTP 503 on attempt {attempt}")
        return self.posts


@dataclass(frozen=True, slots=True)
class Corpus:
    """All sources, in corpus order."""

    sources: tuple[SourceSpec, ...]

    def source(self, source_id: str) -> SourceSpec:
        """Return a source by id.

        Raises:
            KeyError: No such source.
        """
        for spec in self.sources:
            if spec.id == source_id:
                return spec
        raise KeyError(source_id)

    @property
    def source_ids(self) -> list[str]:
        """Ids of every source."""
        return [s.id for s in self.sources]


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What the pipeline must find in the bundled corpus.

    Attributes:
        announcements: ``(project, symbol, iso date)`` of every real announcement.
        decoys: Documents that mention TGEs but announce none.
        rejects: Document id -> reason the data-quality stage must give.
        malformed: ``(source id, entry id or None)`` of malformed entries.
        duplicates: Ids of exact re-posts.
    """

    announcements: frozenset[tuple[str, str, str]]
    decoys: frozenset[str]
    rejects: dict[str, str]
    malformed: tuple[tuple[str, str | None], ...]
    duplicates: frozenset[str]


def _read(name: str) -> Any:
    try:
        text = resources.files("agents").joinpath("data").joinpath(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"bundled corpus file {name!r} is missing: {exc}") from exc
    return json.loads(text)


@functools.cache
def load_corpus() -> Corpus:
    """Load (once) the bundled corpus."""
    raw = _read(_CORPUS)
    return Corpus(
        tuple(
            SourceSpec(
                id=s["id"], name=s["name"], kind=s["kind"], posts=tuple(s["posts"]),
                flaky_failures=int(s.get("flaky_failures", 0)), down=bool(s.get("down", False)),
            )
            for s in raw["sources"]
        )
    )


def load_ground_truth() -> GroundTruth:
    """Load the ground truth shipped with the corpus."""
    raw = _read(_TRUTH)
    return GroundTruth(
        announcements=frozenset(
            (a["project"], a["symbol"], a["date"]) for a in raw["announcements"]
        ),
        decoys=frozenset(raw["decoys"]),
        rejects={r["doc_id"]: r["reason"] for r in raw["rejects"]},
        malformed=tuple((m["source_id"], m["id"]) for m in raw["malformed"]),
        duplicates=frozenset(raw["duplicates"]),
    )
