"""Hybrid recall index: a warm NumPy matrix of embeddings plus per-row metadata.

Semantic similarity is one matrix-vector product over all rows; metadata
filters (namespace, kind, confidence, age, expiry) are vectorised masks; the
best candidates are then re-ranked with keyword overlap and decayed feedback.
Rows are removed by moving the last row into the hole, so the matrix stays
dense and every search touches only live rows.

Example:
    >>> from memory.embedding import HashingEmbedder
    >>> from memory.records import Memory
    >>> emb = HashingEmbedder(dim=64)
    >>> index = VectorIndex(dim=64)
    >>> for i, text in enumerate(["solana validator outage", "ethereum gas fees rise"]):
    ...     index.add(Memory(id=str(i), namespace="n", content=text), emb.embed([text])[0])
    >>> [h.memory.id for h in index.search("gas fees", emb.embed(["gas fees"])[0], k=1, now=0.0)]
    ['1']
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import numpy.typing as npt

from memory.embedding import tokenize
from memory.records import Memory, MemoryFilter, RecallHit, effective_score, namespace_matches

__all__ = ["RankWeights", "VectorIndex"]

# Rows from which ``_top`` first cuts by a sample (measured crossover ~5 000).
_SAMPLE_FROM = 6000
_KINDS = {"finding": 0, "observation": 1, "synthesis": 2}


class RankWeights:
    """How the final recall score mixes its parts.

    Attributes:
        semantic: Weight of cosine similarity.
        keyword: Weight of the fraction of query words present.
        feedback: Weight of ``tanh(decayed feedback score)``.
        half_life: Seconds for a feedback score to halve.
    """

    __slots__ = ("feedback", "half_life", "keyword", "semantic")

    def __init__(
        self,
        *,
        semantic: float = 0.7,
        keyword: float = 0.3,
        feedback: float = 0.15,
        half_life: float = 7 * 86400.0,
    ) -> None:
        self.semantic = semantic
        self.keyword = keyword
        self.feedback = feedback
        self.half_life = half_life


class VectorIndex:
    """In-memory index of memories for recall.

    Args:
        dim: Embedding dimension.
        capacity: Initial number of rows allocated (grows by doubling).
        weights: Rank mixing weights.
    """

    def __init__(
        self,
        *,
        dim: int,
        capacity: int = 1024,
        weights: RankWeights | None = None,
    ) -> None:
        self.dim = dim
        self.weights = weights or RankWeights()
        cap = max(16, capacity)
        # Dimension-major: row d holds dimension d of every memory, so a query
        # touches only the rows of its non-zero dimensions (see ``_similarity``).
        self._cols = np.zeros((dim, cap), dtype=np.float32)
        self._ns = np.zeros(cap, dtype=np.int32)
        self._kind = np.zeros(cap, dtype=np.int8)
        self._conf = np.zeros(cap, dtype=np.float32)
        self._created = np.zeros(cap, dtype=np.float64)
        self._expires = np.full(cap, np.inf, dtype=np.float64)
        # Feedback score and its time per row, so re-ranking decays them in one go.
        self._score = np.zeros(cap, dtype=np.float64)
        self._score_at = np.zeros(cap, dtype=np.float64)
        # Rows with a non-zero feedback score: while none, re-ranking skips the decay.
        self._feedback_rows = 0
        self._memories: list[Memory] = []
        self._words: list[frozenset[str] | None] = []
        self._rows: dict[str, int] = {}
        self._ns_codes: dict[str, int] = {}
        self._expiring = 0

    def __len__(self) -> int:
        return len(self._memories)

    def __contains__(self, memory_id: object) -> bool:
        return memory_id in self._rows

    def get(self, memory_id: str) -> Memory | None:
        """The indexed version of a memory (without its vector)."""
        row = self._rows.get(memory_id)
        return None if row is None else self._memories[row]

    def ids(self) -> list[str]:
        """Ids of every indexed memory."""
        return list(self._rows)

    def _grow(self) -> None:
        cap = self._cols.shape[1] * 2
        cols = np.zeros((self.dim, cap), dtype=np.float32)
        cols[:, : self._cols.shape[1]] = self._cols
        self._cols = cols
        self._ns = np.resize(self._ns, cap)
        self._kind = np.resize(self._kind, cap)
        self._conf = np.resize(self._conf, cap)
        self._created = np.resize(self._created, cap)
        self._expires = np.resize(self._expires, cap)
        self._score = np.resize(self._score, cap)
        self._score_at = np.resize(self._score_at, cap)

    def add(self, memory: Memory, vector: npt.NDArray[np.float32]) -> None:
        """Index a memory (replacing an earlier version with the same id)."""
        light = memory if not memory.vector else _without_vector(memory)
        row = self._rows.get(memory.id)
        if row is None:
            row = len(self._memories)
            if row >= self._cols.shape[1]:
                self._grow()
            self._memories.append(light)
            self._words.append(None)
            self._rows[memory.id] = row
            fresh = True
        else:
            fresh = False
            if math.isfinite(self._expires[row]):
                self._expiring -= 1
            self._memories[row] = light
            self._words[row] = None
        self._cols[:, row] = vector
        self._ns[row] = self._ns_codes.setdefault(memory.namespace, len(self._ns_codes))
        # A StrEnum member is its value as a dict key (and .value is a slow descriptor).
        self._kind[row] = _KINDS.get(memory.kind, 0)
        self._conf[row] = memory.confidence
        self._created[row] = memory.created_at
        self._expires[row] = np.inf if memory.expires_at is None else memory.expires_at
        if fresh:
            # A fresh row may hold what np.resize or a removal left there: set
            # both, without reading the old score (no feedback to uncount).
            score = memory.score
            self._score[row] = score
            self._score_at[row] = memory.score_at
            if score != 0.0:
                self._feedback_rows += 1
        else:
            self._set_score(row, memory)
        if memory.expires_at is not None:
            self._expiring += 1

    def update(self, memory: Memory) -> None:
        """Replace an indexed memory's metadata (e.g. its feedback score), keeping its vector."""
        row = self._rows.get(memory.id)
        if row is not None:
            self._memories[row] = memory if not memory.vector else _without_vector(memory)
            self._set_score(row, memory)

    def _set_score(self, row: int, memory: Memory | None) -> None:
        """Record a row's feedback score (``None``: clear it), keeping the count in step."""
        if self._score[row] != 0.0:
            self._feedback_rows -= 1
        score = 0.0 if memory is None else memory.score
        self._score[row] = score
        self._score_at[row] = 0.0 if memory is None else memory.score_at
        if score != 0.0:
            self._feedback_rows += 1

    def remove(self, memory_id: str) -> bool:
        """Drop a memory from the index; returns whether it was there."""
        row = self._rows.pop(memory_id, None)
        if row is None:
            return False
        if math.isfinite(self._expires[row]):
            self._expiring -= 1
        self._set_score(row, None)
        last = len(self._memories) - 1
        if row != last:
            moved = self._memories[last]
            self._memories[row] = moved
            self._words[row] = self._words[last]
            self._rows[moved.id] = row
            self._cols[:, row] = self._cols[:, last]
            for arr in (self._ns, self._kind, self._conf, self._created, self._expires,
                        self._score, self._score_at):
                arr[row] = arr[last]
        self._memories.pop()
        self._words.pop()
        return True

    def _mask(self, flt: MemoryFilter | None, now: float) -> npt.NDArray[np.bool_] | None:
        n = len(self._memories)
        mask: npt.NDArray[np.bool_] | None = None

        def both(m: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
            return m if mask is None else mask & m

        if self._expiring:
            mask = both(self._expires[:n] > now)
        if flt is None:
            return mask
        if flt.namespaces:
            codes = [c for ns, c in self._ns_codes.items()
                     if any(namespace_matches(p, ns) for p in flt.namespaces)]
            mask = both(np.isin(self._ns[:n], np.asarray(codes, dtype=np.int32)))
        if flt.kinds:
            kinds = [_KINDS[k.value] for k in flt.kinds]
            mask = both(np.isin(self._kind[:n], np.asarray(kinds, dtype=np.int8)))
        if flt.min_confidence > 0:
            mask = both(self._conf[:n] >= flt.min_confidence)
        if flt.since > 0:
            mask = both(self._created[:n] >= flt.since)
        return mask

    def _similarity(self, vector: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float32]:
        """Dot products of ``vector`` with the first ``n`` memories.

        Exact, yet it reads only the dimensions where the query is non-zero:
        a hashed short query sets ~15 of 128, so this moves a tenth of the
        bytes of a full matrix-vector product (memory-bound at 100k rows), and
        it never wakes BLAS threads, which stall the event loop on a busy host.
        """
        dims = vector.nonzero()[0]
        if not len(dims):
            return np.zeros(n, dtype=np.float32)
        # Python floats, not NumPy scalars: a float32 array times a Python
        # float stays float32 (NEP 50) and gives the same products.
        vals = vector[dims].tolist()
        rows = dims.tolist()
        cols = self._cols
        sims: npt.NDArray[np.float32] = cols[rows[0], :n] * vals[0]
        # One scratch row instead of a temporary per dimension (half the time).
        term = np.empty(n, dtype=np.float32)
        for d, v in zip(rows[1:], vals[1:], strict=True):
            np.multiply(cols[d, :n], v, out=term)
            sims += term
        return sims

    def _words_of(self, row: int) -> frozenset[str]:
        words = self._words[row]
        if words is None:
            words = self._words[row] = frozenset(tokenize(self._memories[row].content))
        return words

    def search(
        self,
        query: str,
        vector: npt.NDArray[np.float32],
        *,
        k: int = 10,
        flt: MemoryFilter | None = None,
        now: float,
    ) -> list[RecallHit]:
        """Top ``k`` memories for a query, best first (ties broken by id)."""
        n = len(self._memories)
        if n == 0 or k <= 0:
            return []
        sims = self._similarity(vector, n)
        mask = self._mask(flt, now)
        if mask is not None:
            sims[~mask] = -np.inf
            eligible = int(mask.sum())
        else:
            eligible = n
        post = flt is not None and bool(flt.tags or flt.authors)
        query_words = frozenset(tokenize(query))
        want = max(k * 3, 24)
        memories = self._memories
        while True:
            c = min(eligible, want)
            if c == 0:
                return []
            cand = _top(sims, c) if c < n else np.arange(n)
            sem = sims[cand]
            if mask is not None:
                live = sem != -np.inf
                if not live.all():
                    cand, sem = cand[live], sem[live]
            if post and flt is not None:
                keep = [flt.matches(memories[r]) for r in cand.tolist()]
                cand, sem = cand[keep], sem[keep]
            if len(cand) >= k or c >= eligible:
                return self._best(cand, sem, query_words, now, k)
            want *= 4

    def _best(
        self,
        cand: npt.NDArray[np.intp],
        sem: npt.NDArray[np.float32],
        query_words: frozenset[str],
        now: float,
        k: int,
    ) -> list[RecallHit]:
        """The ``k`` best of the candidate rows by final score, then id.

        One pass per list instead of a tuple per candidate: this runs for
        every recall, and the per-candidate Python steps were half its time.
        NumPy does not help here (a few dozen rows cost less than its
        per-call overhead).
        """
        w = self.weights
        rows = cand.tolist()
        sems = sem.tolist()
        if query_words:
            words = self._words
            nq = len(query_words)
            kws = [
                len(query_words & (ws if (ws := words[r]) is not None else self._words_of(r))) / nq
                for r in rows
            ]
        else:
            kws = [0.0] * len(rows)
        ws_, wk = w.semantic, w.keyword
        totals = [ws_ * s + wk * kw for s, kw in zip(sems, kws, strict=True)]
        if self._feedback_rows:
            # Some memory carries feedback: decay it (zero stays zero, as in effective_score).
            wf, half = w.feedback, w.half_life
            fbs = [
                0.0 if sc == 0.0 else effective_score(sc, at, now, half)
                for sc, at in zip(
                    self._score[cand].tolist(), self._score_at[cand].tolist(), strict=True
                )
            ]
            totals = [t + wf * math.tanh(fb) for t, fb in zip(totals, fbs, strict=True)]
        else:
            fbs = [0.0] * len(rows)
        memories = self._memories
        # Every candidate scoring at least the k-th best, ties included, so
        # that the id tie-break sees all of them.
        pairs = enumerate(zip(totals, rows, strict=True))
        if len(rows) > k:
            cut = sorted(totals)[-k]
            scored = sorted([(-t, memories[r].id, i) for i, (t, r) in pairs if t >= cut])
        else:
            scored = sorted([(-t, memories[r].id, i) for i, (t, r) in pairs])
        return [
            RecallHit(memory=memories[rows[i]], score=-neg, semantic=sems[i], keyword=kws[i],
                      feedback=fbs[i])
            for neg, _, i in scored[:k]
        ]


def _top(sims: npt.NDArray[np.float32], c: int) -> npt.NDArray[np.intp]:
    """Rows of the ``c`` largest values, unordered (what ``argpartition`` gives).

    The c-th largest of every 8th value cannot exceed the c-th largest of
    all, so it is a cut that keeps the top ``c``: the partition then runs over
    the few rows above it instead of all (a third of the time at 20 000
    rows). Many values tied at the cut fall back to partitioning everything.
    """
    n = len(sims)
    sample = sims[::8]
    # Below a few thousand rows one argpartition of them all is cheaper.
    if n >= _SAMPLE_FROM and len(sample) > c:
        cut = np.partition(sample, len(sample) - c)[len(sample) - c]
        rows: npt.NDArray[np.intp] = (sims >= cut).nonzero()[0]
        m = len(rows)
        if m <= 32 * c:
            if m == c:
                return rows
            # The c-th largest value of the few rows left, by a value
            # partition (several times cheaper than an argpartition), then the
            # rows at or above it; ties at it are cut to the lowest rows.
            vals = sims[rows]
            t = np.partition(vals, m - c)[m - c]
            top: npt.NDArray[np.intp] = rows[vals >= t]
            if len(top) == c:
                return top
            above = rows[vals > t]
            top = np.concatenate((above, rows[vals == t][: c - len(above)]))
            return top
    return np.argpartition(sims, n - c)[n - c :]


def _without_vector(memory: Memory) -> Memory:
    return msgspec.structs.replace(memory, vector=b"")
