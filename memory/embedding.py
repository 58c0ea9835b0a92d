"""Text embeddings: the :class:`Embedder` Protocol and a download-free default.

:class:`HashingEmbedder` maps word unigrams and bigrams to a fixed number of
dimensions with a stable hash (CRC-32 of each word, not Python's salted
``hash``; n-grams combine their words' hashes), with a sign bit to cancel
collisions on average, and L2-normalises the result. It is
deterministic across processes and hosts, so vectors persisted by one node are
comparable with those computed by another.

Example:
    >>> from memory.embedding import HashingEmbedder
    >>> emb = HashingEmbedder(dim=64)
    >>> v = emb.embed(["token unlock schedule", "unlock schedule for the token"])
    >>> v.shape, round(float(v[0] @ v[0]), 3), float(v[0] @ v[1]) > 0.5
    ((2, 64), 1.0, True)
"""

from __future__ import annotations

import math
import re
import sys
import zlib
from collections.abc import Sequence
from itertools import pairwise
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["Embedder", "HashingEmbedder", "tokenize", "vector_from_bytes", "vector_to_bytes"]

Vectors = npt.NDArray[np.float32]

_CACHE_MAX = 200_000
# Up to this many features a text is summed in Python (see ``embed``).
_SHORT = 48
# A native float32 vector already is the persisted (little-endian) format.
_NATIVE_F32 = np.dtype(np.float32) if sys.byteorder == "little" else None
_WORD = re.compile(r"[a-z0-9]+(?:['._-][a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens of ``text``.

    Example:
        >>> tokenize("The TGE of token-X: 3.5M unlocked!")
        ['the', 'tge', 'of', 'token-x', '3.5m', 'unlocked']
    """
    return _WORD.findall(text.lower())


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of a fixed dimension."""

    @property
    def dim(self) -> int:
        """Number of dimensions of every vector."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return an ``(len(texts), dim)`` float32 array of unit (or zero) rows."""
        ...


class HashingEmbedder:
    """Feature hashing over word n-grams; needs no model download.

    Args:
        dim: Number of dimensions (a power of two keeps the modulo cheap).
        ngrams: Largest n-gram size; 2 adds word bigrams to unigrams.
    """

    def __init__(self, *, dim: int = 128, ngrams: int = 2) -> None:
        if dim <= 0 or ngrams <= 0:
            raise ValueError("dim and ngrams must be positive")
        self._dim = dim
        self._ngrams = ngrams
        # Word -> hash is pure, so cache it: vocabularies repeat a lot.
        self._cache: dict[str, int] = {}
        # Word -> (slot, value) and word pair -> (slot, value): the features
        # themselves, also pure, so a repeated text costs a dict lookup per
        # word and per pair instead of a dozen integer operations per bigram.
        self._unigrams: dict[str, tuple[int, float]] = {}
        self._bigrams: dict[tuple[str, str], tuple[int, float]] = {}

    @property
    def dim(self) -> int:
        """Number of dimensions."""
        return self._dim

    def _hash(self, word: str) -> int:
        h = self._cache.get(word)
        if h is None:
            h = zlib.crc32(word.encode("utf-8"))
            if len(self._cache) < _CACHE_MAX:
                self._cache[word] = h
        return h

    def _unigram(self, word: str) -> tuple[int, float]:
        feature = self._unigrams.get(word)
        if feature is None:
            h = self._hash(word)
            # The word's own hash picks the slot, its top bit the sign.
            feature = (h % self._dim, 1.0 if h & 0x80000000 else -1.0)
            if len(self._unigrams) < _CACHE_MAX:
                self._unigrams[word] = feature
        return feature

    def _ngram(self, hashes: Sequence[int]) -> tuple[int, float]:
        n = len(hashes)
        h = hashes[0]
        for j in range(1, n):
            h = ((h * 0x01000193) ^ hashes[j]) & 0xFFFFFFFF
        # Avalanche, so the low bits used for the slot depend on all words.
        h ^= h >> 15
        h = (h * 0x2C1B3C6D) & 0xFFFFFFFF
        h ^= h >> 12
        # Longer n-grams are rarer and more specific: weight them lower so
        # that a shared word still counts when word order differs.
        weight = 1.0 / n
        return h % self._dim, weight if h & 0x80000000 else -weight

    def _bigram(self, pair: tuple[str, str]) -> tuple[int, float]:
        feature = self._bigrams.get(pair)
        if feature is None:
            feature = self._ngram((self._hash(pair[0]), self._hash(pair[1])))
            if len(self._bigrams) < _CACHE_MAX:
                self._bigrams[pair] = feature
        return feature

    def features(self, words: Sequence[str]) -> list[tuple[int, float]]:
        """(slot, value) of every feature of a token sequence: unigrams, then n-grams by size."""
        unigrams = self._unigrams
        try:
            feats: list[tuple[int, float]] = [unigrams[w] for w in words]
        except KeyError:
            feats = [self._unigram(w) for w in words]
        if self._ngrams >= 2 and len(words) >= 2:
            bigrams = self._bigrams
            pairs = list(pairwise(words))
            try:
                feats += [bigrams[p] for p in pairs]
            except KeyError:
                feats += [self._bigram(p) for p in pairs]
            if self._ngrams > 2:
                hashes = [self._hash(w) for w in words]
                for n in range(3, self._ngrams + 1):
                    feats += [self._ngram(hashes[i : i + n]) for i in range(len(hashes) - n + 1)]
        return feats

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed each text; an empty text gives a zero row."""
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        dim = self._dim
        for row, text in enumerate(texts):
            feats = self.features(tokenize(text))
            if not feats:
                continue
            if len(feats) > _SHORT:
                idx, val = zip(*feats, strict=True)
                # One bincount instead of a NumPy scalar update per feature (10x
                # faster); features in a fixed order, so sums (and vectors) are stable.
                vec = np.bincount(idx, weights=val, minlength=dim)
                norm = math.sqrt(vec @ vec)
                if norm > 0:
                    out[row] = vec / norm
                continue
            # A short text (a query, a finding of a sentence): its few features
            # summed into a dict cost less than NumPy's per-call overhead of
            # the bincount path; the same float64 sums in the same order, each
            # rounded to float32 once on assignment, as there.
            acc: dict[int, float] = {}
            get = acc.get
            for slot, value in feats:
                acc[slot] = get(slot, 0.0) + value
            norm = math.sqrt(sum([v * v for v in acc.values()]))
            if norm > 0:
                line = out[row]
                for slot, value in acc.items():
                    line[slot] = value / norm
        return out


def vector_to_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    """Serialise one vector as little-endian float32 (the persisted format)."""
    if vector.dtype is _NATIVE_F32:
        return vector.tobytes()
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(data: bytes, dim: int) -> Vectors:
    """Read a persisted vector; a missing or wrong-sized one reads as zeros."""
    if len(data) != dim * 4:
        return np.zeros(dim, dtype=np.float32)
    return np.frombuffer(data, dtype="<f4").astype(np.float32)
