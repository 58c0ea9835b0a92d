"""Validation of memory input, the embedder and the recall index (no servers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory import HashingEmbedder, Memory, MemoryFilter, MemoryKind, RecallHit, VectorIndex
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


@given(
    st.lists(st.sampled_from([-math.inf, 0.0, 0.1, 0.25, 0.3, 0.9]) | st.floats(-1, 1),
             min_size=64, max_size=64),
    st.integers(1, 40),
    st.integers(6000, 9000),
)
@settings(max_examples=40)
def test_the_sampled_cut_of_many_rows_keeps_the_largest_values_ties_included(
    palette: list[float], c: int, n: int
) -> None:
    from memory.index import _SAMPLE_FROM, _top

    assert n >= _SAMPLE_FROM  # the sampled path, with its value partition and tie handling
    # Many rows drawn from few values: ties at the cut are the rule, not the exception.
    sims = np.asarray(palette, dtype=np.float32)[np.arange(n) * 7919 % 64]
    rows = _top(sims, c)
    assert len(rows) == c == len(set(rows.tolist()))
    assert sorted(sims[rows].tolist()) == sorted(sims.tolist())[-c:]


def test_records_are_left_out_of_the_cyclic_collector() -> None:
    import gc

    m = Memory(id="a", namespace="n", content="x", tags=("t",), sources=("b",))
    assert not gc.is_tracked(m)
    assert not gc.is_tracked(RecallHit(memory=m, score=1.0, semantic=1.0, keyword=0.0,
                                       feedback=0.0))


def _reference_embedding(text: str, dim: int, ngrams: int) -> np.ndarray:
    """The hashing embedder's definition, one feature at a time."""
    import zlib

    from memory.embedding import tokenize

    hashes = [zlib.crc32(w.encode()) for w in tokenize(text)]
    vec = np.zeros(dim, dtype=np.float64)
    for h in hashes:
        vec[h % dim] += 1.0 if h & 0x80000000 else -1.0
    for n in range(2, ngrams + 1):
        for i in range(len(hashes) - n + 1):
            h = hashes[i]
            for j in range(i + 1, i + n):
                h = ((h * 0x01000193) ^ hashes[j]) & 0xFFFFFFFF
            h ^= h >> 15
            h = (h * 0x2C1B3C6D) & 0xFFFFFFFF
            h ^= h >> 12
            vec[h % dim] += 1.0 / n if h & 0x80000000 else -1.0 / n
    norm = float(np.sqrt(vec @ vec))
    return (vec / norm if norm > 0 else vec).astype(np.float32)


@pytest.mark.parametrize(("dim", "ngrams"), [(128, 2), (64, 1), (32, 3)])
def test_the_embedders_feature_caches_give_the_defined_vectors(dim: int, ngrams: int) -> None:
    texts = ["apollo token unlock apollo token", "", "The TGE of token-X: 3.5M unlocked!",
             "apollo token unlock apollo token", "one", "token unlock " * 40]
    emb = HashingEmbedder(dim=dim, ngrams=ngrams)
    for _ in range(2):  # cold, then from the caches
        got = emb.embed(texts)
        for row, text in zip(got, texts, strict=True):
            assert np.allclose(row, _reference_embedding(text, dim, ngrams), atol=1e-6)


def test_recall_ranks_by_the_scalar_formula_through_feedback_updates_and_removals() -> None:
    import random

    from memory.index import RankWeights

    rng = random.Random(5)
    words = "apollo zeus token unlock audit bridge pool yield vote burn".split()
    emb = HashingEmbedder(dim=64)
    index = VectorIndex(dim=64, capacity=4, weights=RankWeights(half_life=100.0))
    live: dict[str, Memory] = {}
    for i in range(40):
        text = " ".join(rng.choice(words) for _ in range(5))
        score = rng.choice([0.0, 0.0, 1.5, -2.0])
        memory = Memory(id=f"{i:03d}", namespace="n", content=text, score=score,
                        score_at=float(rng.randrange(50)))
        index.add(memory, emb.embed([text])[0])
        live[memory.id] = memory
        if i % 2 == 1:  # rows leave, others move into their holes, new rows reuse the slots
            gone = rng.choice(sorted(live))
            assert index.remove(gone)
            del live[gone]
        if i % 4 == 3:
            changed = rng.choice(sorted(live))
            live[changed] = Memory(id=changed, namespace="n", content=live[changed].content,
                                   score=rng.choice([0.0, 3.0]), score_at=60.0)
            index.update(live[changed])
    assert len(index) == len(live) <= 24  # every row is a candidate: the whole ranking shows
    w, now = index.weights, 120.0
    for query in ("apollo token", "audit bridge burn", "zeus"):
        qv = emb.embed([query])[0]
        qw = set(query.split())
        expected = []
        for m in live.values():
            sem = float(np.float32(emb.embed([m.content])[0] @ qv))
            kw = len(qw & set(m.content.split())) / len(qw)
            fb = effective_score(m.score, m.score_at, now, w.half_life)
            total = w.semantic * sem + w.keyword * kw + w.feedback * math.tanh(fb)
            expected.append((-total, m.id, kw, fb))
        expected.sort()
        hits = index.search(query, qv, k=8, now=now)
        assert [h.memory.id for h in hits] == [e[1] for e in expected[:8]]
        for h, (neg, _, kw, fb) in zip(hits, expected, strict=False):
            assert h.score == pytest.approx(-neg, abs=1e-6)
            assert (h.keyword, h.feedback) == (kw, pytest.approx(fb))
            assert h.memory == live[h.memory.id]
