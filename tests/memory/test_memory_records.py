"""Validation of memory input, the embedder and the recall index (no servers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memory import HashingEmbedder, Memory, MemoryFilter, MemoryKind, VectorIndex
from memory.records import (
    effective_score,
    validate_confidence,
    validate_content,
    validate_namespace,
    validate_tags,
    validate_ttl,
)
from swarm.errors import MemoryStoreError, MemoryValidationError, SwarmError


def test_validation_error_is_in_the_hierarchy() -> None:
    assert issubclass(MemoryValidationError, MemoryStoreError)
    assert issubclass(MemoryValidationError, SwarmError)
    assert issubclass(MemoryValidationError, ValueError)


@pytest.mark.parametrize("ns", ["", "Research", "a..b", ".a", "a.", "a b", "ä", "a/b", "x" * 64])
def test_bad_namespaces_are_rejected(ns: str) -> None:
    with pytest.raises(MemoryValidationError, match="namespace"):
        validate_namespace(ns)


@pytest.mark.parametrize("ns", ["a", "research.tge", "agent_1.notes-2024", "a.b.c.d.e.f.g.h"])
def test_good_namespaces_pass(ns: str) -> None:
    assert validate_namespace(ns) == ns


def test_content_limits() -> None:
    assert validate_content("x" * 10, 10) == "x" * 10
    with pytest.raises(MemoryValidationError, match="exceeds the limit of 10 bytes"):
        validate_content("é" * 6, 10)
    for bad in ["", "   ", "a\x00b", "\ud800"]:
        with pytest.raises(MemoryValidationError):
            validate_content(bad, 100)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_confidence_property(value: float) -> None:
    if math.isfinite(value) and 0.0 <= value <= 1.0:
        assert validate_confidence(value) == value
    else:
        with pytest.raises(MemoryValidationError, match="confidence"):
            validate_confidence(value)


@given(st.text(max_size=80))
def test_namespace_property(text: str) -> None:
    segments = text.split(".")
    ok = (
        len(segments) <= 8
        and all(
            0 < len(s) <= 63 and s[0] in "abcdefghijklmnopqrstuvwxyz0123456789"
            and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_-" for c in s)
            for s in segments
        )
    )
    if ok:
        assert validate_namespace(text) == text
    else:
        with pytest.raises(MemoryValidationError):
            validate_namespace(text)


def test_tags_and_ttl() -> None:
    assert validate_tags(["b", "a", "b"]) == ("a", "b")
    with pytest.raises(MemoryValidationError):
        validate_tags("tge")
    with pytest.raises(MemoryValidationError):
        validate_tags(["Bad Tag"])
    assert validate_ttl(None) is None
    for bad in [0, -1, math.inf, math.nan, True]:
        with pytest.raises(MemoryValidationError):
            validate_ttl(bad)


def test_effective_score_decays() -> None:
    assert effective_score(4.0, 0.0, 0.0, 10.0) == 4.0
    assert effective_score(4.0, 0.0, 20.0, 10.0) == pytest.approx(1.0)


def test_embedder_is_deterministic_and_unit_length() -> None:
    a = HashingEmbedder(dim=64).embed(["solana validator outage", ""])
    b = HashingEmbedder(dim=64).embed(["solana validator outage", ""])
    assert np.array_equal(a, b)
    assert float(np.linalg.norm(a[0])) == pytest.approx(1.0, abs=1e-5)
    assert not a[1].any()


def _index(texts: list[tuple[str, str, tuple[str, ...]]]) -> tuple[VectorIndex, HashingEmbedder]:
    emb = HashingEmbedder(dim=128)
    index = VectorIndex(dim=128, capacity=2)
    for i, (ns, text, tags) in enumerate(texts):
        memory = Memory(id=f"{i:04d}", namespace=ns, content=text, tags=tags, created_at=float(i))
        index.add(memory, emb.embed([text])[0])
    return index, emb


def test_index_search_filters_and_removal() -> None:
    index, emb = _index([
        ("research.tge", "project apollo token unlock in may", ("tge",)),
        ("research.defi", "apollo lending pool exploit", ("defi",)),
        ("ops", "apollo deploy pipeline is green", ()),
        ("research.tge", "zeus token generation event delayed", ("tge",)),
    ])
    q = "apollo token unlock"
    hits = index.search(q, emb.embed([q])[0], k=2, now=0.0)
    assert hits[0].memory.id == "0000"
    assert hits[0].keyword == 1.0
    only = index.search(q, emb.embed([q])[0], k=10, flt=MemoryFilter(namespaces=("research",)),
                        now=0.0)
    assert {h.memory.id for h in only} == {"0000", "0001", "0003"}
    tagged = index.search(q, emb.embed([q])[0], k=10, flt=MemoryFilter(tags=("defi",)), now=0.0)
    assert [h.memory.id for h in tagged] == ["0001"]
    assert index.remove("0000") and not index.remove("0000")
    assert "0003" in index and len(index) == 3
    hits = index.search(q, emb.embed([q])[0], k=10, now=0.0)
    assert "0000" not in {h.memory.id for h in hits}
    # The row moved into the hole is still found with its own vector.
    z = index.search("zeus delayed", emb.embed(["zeus delayed"])[0], k=1, now=0.0)
    assert z[0].memory.id == "0003" and z[0].semantic > 0.5


def test_index_skips_expired_and_filters_kind() -> None:
    emb = HashingEmbedder(dim=32)
    index = VectorIndex(dim=32)
    index.add(Memory(id="a", namespace="n", content="alpha", expires_at=5.0),
              emb.embed(["alpha"])[0])
    index.add(Memory(id="b", namespace="n", content="alpha", kind=MemoryKind.SYNTHESIS),
              emb.embed(["alpha"])[0])
    v = emb.embed(["alpha"])[0]
    assert {h.memory.id for h in index.search("alpha", v, now=1.0)} == {"a", "b"}
    assert [h.memory.id for h in index.search("alpha", v, now=6.0)] == ["b"]
    only = index.search("alpha", v, now=1.0, flt=MemoryFilter(kinds=(MemoryKind.FINDING,)))
    assert [h.memory.id for h in only] == ["a"]


@given(
    st.lists(st.sampled_from([-math.inf, -0.5, 0.0, 0.1, 0.25, 0.3, 0.9]) | st.floats(-1, 1),
             min_size=1, max_size=3000),
    st.integers(1, 40),
)
def test_the_candidate_cut_keeps_the_largest_values(values: list[float], c: int) -> None:
    from memory.index import _top

    sims = np.asarray(values, dtype=np.float32)
    c = min(c, len(sims))
    rows = _top(sims, c)
    assert len(rows) == c == len(set(rows.tolist()))
    assert sorted(sims[rows].tolist()) == sorted(sims.tolist())[-c:]
