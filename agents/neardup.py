"""Near-duplicate detection: 64-bit SimHash of word shingles.

The same story re-posted by two sites rarely matches byte for byte: a
different headline case, a tracking suffix, a trimmed sentence. SimHash maps
similar texts to fingerprints a few bits apart, so the data-quality stage
drops a candidate whose fingerprint lies within :data:`MAX_DISTANCE` bits of
one already kept, across sources.

Example:
    >>> from agents.neardup import distance, simhash
    >>> a = simhash("Binance will list Lombard (BARD) and open trading at 14:00 UTC today.")
    >>> b = simhash("BINANCE will list Lombard (BARD) and open trading at 14:00 UTC today!")
    >>> c = simhash("What is a token generation event? A beginner's guide to TGEs.")
    >>> distance(a, b) <= 3 < distance(a, c)
    True
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

__all__ = ["MAX_DISTANCE", "distance", "simhash"]

#: Fingerprints at most this many bits apart are near-duplicates.
MAX_DISTANCE = 3
_WORD = re.compile(r"\w+", re.U)
_SHINGLE = 3


def simhash(text: str) -> int:
    """64-bit SimHash of the text's overlapping three-word shingles (0 for an empty text)."""
    words = _WORD.findall(text.lower())
    if not words:
        return 0
    shingles = [" ".join(words[i : i + _SHINGLE]) for i in range(max(1, len(words) - 2))]
    digests = b"".join(hashlib.blake2b(s.encode(), digest_size=8).digest() for s in shingles)
    bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8)).reshape(len(shingles), 64)
    votes = bits.sum(axis=0, dtype=np.int64) * 2 - len(shingles)
    return int("".join("1" if v > 0 else "0" for v in votes), 2)


def distance(a: int, b: int) -> int:
    """Bits in which two fingerprints differ."""
    return (a ^ b).bit_count()
