"""Cheap pre-tests for the cue patterns: the literal start of every alternative.

Most cue patterns are alternations of phrases; scanning a text with each of
them costs far more than asking whether any phrase's first letters occur in
the lower-cased text at all. :func:`literal_keys` derives those first letters
from the pattern itself with the standard library's regular-expression parser.
That parser is internal to :mod:`re`, so this module is the one place that
touches it, behind a version check; on another Python, or on any pattern it
cannot read, it returns None and the cue is simply always scanned.

Example:
    >>> from agents.detect._keys import literal_keys
    >>> literal_keys(r"\\bhow to\\b|\\bguide\\b", 0)
    ('how to', 'guide')
    >>> literal_keys(r"[A-Z]+ token", 0) is None
    True
"""

from __future__ import annotations

import re
import sys
from typing import Any

__all__ = ["literal_keys", "trie_pattern"]

_MIN_KEY = 2

try:  # pragma: no branch
    if sys.version_info < (3, 11) or sys.version_info >= (3, 16):
        raise ImportError("untested re parser")
    from re import _constants as _c  # type: ignore[attr-defined]
    from re import _parser as _p  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    _p = _c = None


def _keys(items: list[tuple[Any, Any]]) -> list[str] | None:
    """Keys of a parsed sequence: one of them occurs in every match of it."""
    i = 0
    while i < len(items) and items[i][0] is _c.AT:
        i += 1  # \b, ^ before the phrase
    if i == len(items):
        return None
    op, arg = items[i]
    if op is _c.LITERAL:
        chars = []
        while i < len(items) and items[i][0] is _c.LITERAL:
            chars.append(chr(items[i][1]))
            i += 1
        key = "".join(chars).lower()
        return [key] if len(key) >= _MIN_KEY else None
    if op is _c.SUBPATTERN:
        return _keys(list(arg[-1]))
    if op is _c.BRANCH:
        keys: list[str] = []
        for branch in arg[1]:
            got = _keys(list(branch))
            if got is None:
                return None
            keys += got
        return keys
    return None


def literal_keys(pattern: str, flags: int) -> tuple[str, ...] | None:
    """Lower-case literal prefixes, one of which every match contains; None if unknown."""
    if _p is None:
        return None
    try:
        parsed = list(_p.parse(pattern, flags))
    except Exception:  # the pattern compiled already; any parser oddity means "unknown"
        return None
    keys = _keys(parsed)
    return tuple(dict.fromkeys(keys)) if keys is not None else None


def trie_pattern(keys: list[str]) -> str:
    """One regular expression matching any of ``keys``, longest first, shaped as a trie.

    A flat alternation of a few hundred phrases is tried phrase by phrase at
    every position; the trie shares prefixes, so each position costs a few
    character tests.

    Example:
        >>> import re
        >>> p = re.compile(trie_pattern(["token", "tge", "to list"]))
        >>> [m.group() for m in p.finditer("to list the token at tge")]
        ['to list', 'token', 'tge']
    """
    trie: dict[str, Any] = {}
    for key in keys:
        node = trie
        for ch in key:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)
