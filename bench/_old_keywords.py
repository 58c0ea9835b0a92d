"""The keyword rules this detector replaced (kept verbatim as the benchmark baseline).

Keyword precision: scores documents for token-generation-event announcements.

Positive phrases (``token generation event``, ``TGE``, ``token launch``,
``airdrop``, ``listing``...) add weight; a negative keyword (``denied``,
``rumour``, ``fake``, ``postponed``...) within a few words of a positive hit
cancels that hit, and one in the headline dismisses the document. A document
becomes a :class:`~agents.messages.Candidate` only with enough surviving
weight, a token symbol and a date: the stage prefers missing an announcement
to reporting a false one.

Example:
    >>> from agents.keywords import score_text
    >>> score_text("Aurora Network ($AUR) TGE", "The token launch is on March 14, 2025.").symbol
    'AUR'
    >>> score_text("TGE rumours denied", "No token launch on March 14, 2025.").dismissed
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Scored", "score_text"]

#: Positive phrases and their weights; each counts at most twice per document.
_POSITIVE: tuple[tuple[str, re.Pattern[str], float], ...] = (
    ("token generation event", re.compile(r"\btoken generation event\b", re.I), 3.0),
    ("tge", re.compile(r"\bTGE\b", re.I), 2.0),
    ("token launch", re.compile(r"\btoken launch\b", re.I), 2.0),
    ("airdrop", re.compile(r"\bairdrops?\b", re.I), 1.0),
    ("listing", re.compile(r"\b(?:will list|listing)\b", re.I), 1.0),
    ("claim", re.compile(r"\bclaim(?:able)?\b", re.I), 0.5),
)
_NEGATIVE = frozenset({
    "denied", "denies", "deny", "rumour", "rumours", "rumor", "rumors", "fake", "scam",
    "scammers", "phishing", "speculation", "speculative", "unconfirmed", "might", "maybe",
    "postponed", "postpones", "indefinitely", "cancelled", "canceled", "false", "hoax",
    "delist", "delists", "delisted", "guide", "explainer",
})
_NEGATIVE_PHRASES = (re.compile(r"\bno plans?\b", re.I), re.compile(r"\bwhat is an? \b", re.I))
#: Words either side of a positive hit searched for a negative keyword.
_WINDOW = 10
_MIN_SCORE = 3.0

_WORD = re.compile(r"[A-Za-z][A-Za-z']*")
_PAREN_SYMBOL = re.compile(r"\(\$?([A-Za-z][A-Za-z0-9]{1,19})\)")
_DOLLAR_SYMBOL = re.compile(r"\$([A-Za-z][A-Za-z0-9]{1,19})\b")
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = re.compile(
    rf"\b\d{{4}}-\d{{2}}-\d{{2}}\b|\b{_MONTH} \d{{1,2}},? \d{{4}}\b|\b\d{{1,2}} {_MONTH} \d{{4}}\b",
    re.I,
)
_CAP_RUN = r"((?:[A-Z][A-Za-z0-9]*\s){0,3}[A-Z][A-Za-z0-9]*)"
_LEADING_FILLER = frozenset({"The", "Official", "Breaking", "Today", "Just", "Update"})


@dataclass(frozen=True, slots=True)
class Scored:
    """The keyword stage's verdict on one text."""

    score: float
    phrases: tuple[str, ...]
    symbol: str
    project: str
    date_text: str
    dismissed: bool
    reasons: tuple[str, ...] = field(default=())

    @property
    def is_candidate(self) -> bool:
        """Enough weight, a symbol and a date, and nothing dismissing it."""
        found = bool(self.symbol and self.date_text)
        return found and not self.dismissed and self.score >= _MIN_SCORE


def _negative_spans(text: str) -> list[tuple[int, int]]:
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text) if m.group().lower() in _NEGATIVE]
    for pattern in _NEGATIVE_PHRASES:
        spans += [(m.start(), m.end()) for m in pattern.finditer(text)]
    return spans


def _word_index(starts: list[int], pos: int) -> int:
    lo, hi = 0, len(starts)
    while lo < hi:
        mid = (lo + hi) // 2
        if starts[mid] <= pos:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _symbol(text: str) -> str:
    found = _PAREN_SYMBOL.findall(text) or _DOLLAR_SYMBOL.findall(text)
    return found[0] if found else ""


def _project(text: str, symbol: str) -> str:
    if not symbol:
        return ""
    m = re.search(_CAP_RUN + r"\s\(\$?" + re.escape(symbol) + r"\)", text)
    if m is None:
        return ""
    words = m.group(1).split()
    while words and words[0] in _LEADING_FILLER:
        words.pop(0)
    return " ".join(words)


def score_text(title: str, body: str) -> Scored:
    """Score one document's text; see the module docstring for the rules."""
    text = f"{title}.\n{body}"
    starts = [m.start() for m in _WORD.finditer(text)]
    negatives = [_word_index(starts, s) for s, _ in _negative_spans(text)]
    title_negative = any(s < len(title) for s, _ in _negative_spans(text))
    score = 0.0
    phrases: list[str] = []
    reasons: list[str] = []
    for name, pattern, weight in _POSITIVE:
        hits = 0
        for m in pattern.finditer(text):
            at = _word_index(starts, m.start())
            if any(abs(at - n) <= _WINDOW for n in negatives):
                reasons.append(f"{name} negated")
                continue
            hits += 1
        if hits:
            score += weight * min(hits, 2)
            phrases.append(name)
    if title_negative:
        reasons.append("negative keyword in headline")
    symbol = _symbol(text)
    date = _DATE.search(text)
    return Scored(
        score=score, phrases=tuple(phrases), symbol=symbol, project=_project(text, symbol),
        date_text=date.group() if date else "", dismissed=title_negative, reasons=tuple(reasons),
    )
