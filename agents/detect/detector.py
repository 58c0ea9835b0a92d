"""The offline TGE detector: decide, then extract, with a calibrated confidence.

:func:`detect` answers two separate questions about one document:

1. *Is it an announcement* of a specific project's token generation event,
   token launch or listing at launch? Launch cues (:data:`~agents.detect.lexicon.POSITIVE`)
   add weight, weighted up in the headline; cues against (guides, rumours,
   denials, delays, scams, later listings, price talk, retrospectives;
   :data:`~agents.detect.lexicon.NEGATIVE`) subtract weight, more in the
   headline and the lead than in the trailing boilerplate; "TGE" in a text
   with no crypto vocabulary at all is another TGE. A named project or ticker
   is required: an announcement is of *something*.
2. *What* project, ticker and date (:mod:`agents.detect.extract`).

The score maps to a confidence in (0, 1) through a logistic curve centred on
the decision threshold; :attr:`Detection.uncertain` marks the band where a
second opinion (a language model) is worth its cost.

Example:
    >>> from agents.detect import detect
    >>> d = detect("Binance Will List Lombard (BARD) with Seed Tag Applied",
    ...            "Binance will list Lombard (BARD) and open trading for BARD/USDT "
    ...            "at 2025-09-18 14:00 (UTC).", published="2025-09-17")
    >>> d.is_announcement, d.project, d.ticker, d.date
    (True, 'Lombard', 'BARD', '2025-09-18')
    >>> detect("What is a TGE? A beginner's guide", "A TGE is...").is_announcement
    False
"""

from __future__ import annotations

import datetime as dt
import math

import msgspec

from agents.detect.dates import parse_published
from agents.detect.extract import extract_date, extract_project, extract_ticker
from agents.detect.lexicon import CRYPTO_CONTEXT, NEGATIVE, POSITIVE, CueScanner

__all__ = ["THRESHOLD", "UNCERTAIN_BAND", "Detection", "detect"]

#: Score at which a document counts as an announcement (confidence 0.5).
THRESHOLD = 3.0
#: Confidence range in which :attr:`Detection.uncertain` is true.
UNCERTAIN_BAND = (0.25, 0.75)
#: Score units per e-fold of the confidence curve.
_SCALE = 1.2
#: Most that launch cues may add up to, so one strong cue against still counts.
_POSITIVE_CAP = 7.0
_SCANNER = CueScanner(POSITIVE + NEGATIVE)
#: Most the extracted fields can add to the score.
_MAX_FIELD_BONUS = 1.0
#: Characters of body, after the headline, that count as the lead.
_LEAD = 400


class Detection(msgspec.Struct, frozen=True, kw_only=True):
    """The detector's verdict on one document.

    Attributes:
        is_announcement: The document announces a specific project's TGE,
            token launch or listing at launch.
        confidence: Probability-like score in (0, 1); 0.5 is the threshold.
        score: The raw score behind ``confidence``.
        project: Project name as written, or None.
        ticker: Upper-case ticker without ``$``, or None.
        date: ISO date of the event (resolved against the publication date),
            or None when the text gives none.
        evidence: The sentence-sized span around the strongest event cue.
        cues: Launch cues found.
        against: Cues against found (reasons the score was lowered).
    """

    is_announcement: bool
    confidence: float
    score: float
    project: str | None
    ticker: str | None
    date: str | None
    evidence: str
    cues: list[str] = msgspec.field(default_factory=list)
    against: list[str] = msgspec.field(default_factory=list)

    @property
    def uncertain(self) -> bool:
        """Confidence falls in :data:`UNCERTAIN_BAND`: worth a second opinion."""
        lo, hi = UNCERTAIN_BAND
        return lo <= self.confidence <= hi


def _position_factor(at: int, title_end: int) -> float:
    if at < title_end:
        return 1.6
    if at < title_end + _LEAD:
        return 1.0
    return 0.5


def _evidence(text: str, at: int) -> str:
    start = max(text.rfind(". ", 0, at) + 2, text.rfind("\n", 0, at) + 1, at - 200, 0)
    ends = [i for i in (text.find(". ", at), text.find("\n", at)) if i != -1]
    end = min([*ends, at + 240, len(text)])
    return " ".join(text[start : end + 1].split())


def detect(
    title: str,
    body: str = "",
    *,
    published: str | dt.date | None = None,
) -> Detection:
    """Decide whether one document is a TGE announcement, and extract its fields.

    Args:
        title: Headline (may be empty when the document has none).
        body: Text.
        published: Publication date or timestamp: resolves dates without a year
            and "tomorrow".
    """
    title = title.strip()
    text = f"{title}\n{body.strip()}" if title else body.strip()
    title_end = len(title)
    pub = published if isinstance(published, dt.date) else parse_published(published)

    score = 0.0
    cues: list[str] = []
    against: list[str] = []
    anchors: list[int] = []
    best_anchor: tuple[float, int] | None = None
    found = _SCANNER.scan(text, text.lower())
    for cue in POSITIVE:
        hits = found.get(cue.name)
        if not hits:
            continue
        if cue.name == "TGE" and CRYPTO_CONTEXT.search(text) is None:
            # "TGE" in a text with no crypto word is another TGE (a disease, an exchange).
            against.append("non-crypto TGE")
            score -= 3.0
            continue
        factor = max(_position_factor(h, title_end) for h in hits)
        gained = cue.weight * factor + 0.25 * min(len(hits) - 1, 2)
        score += gained
        cues.append(cue.name)
        if cue.event:
            anchors += hits
            if best_anchor is None or gained > best_anchor[0]:
                best_anchor = (gained, hits[0])
    # Many launch words pile up in one long text; past a point they add nothing.
    score = min(score, _POSITIVE_CAP)
    for cue in NEGATIVE:
        hits = found.get(cue.name)
        if hits:
            score -= cue.weight * max(_position_factor(h, title_end) for h in hits)
            against.append(cue.name)

    if score + _MAX_FIELD_BONUS < THRESHOLD:
        # Clearly no announcement: the fields would not change the verdict.
        return _verdict(score, None, None, None, text, best_anchor, cues, against)
    anchor_t = tuple(anchors)
    ticker = extract_ticker(text, title_end, anchor_t)
    project = extract_project(text, ticker, anchor_t)
    mention = extract_date(text, pub, anchor_t)
    date = mention.value if mention else None
    if ticker:
        score += 1.0
    if project is None and ticker is None:
        # An announcement is of something: without a name it is at best background.
        against.append("no project named")
        score = min(score - 3.0, THRESHOLD - 1.0)
    elif date is not None and pub is not None and (pub - date).days > 14:
        # Told well after the event: background, not news of it.
        against.append("event long before publication")
        score -= 2.0

    return _verdict(
        score, project, ticker, mention.iso if mention else None, text, best_anchor, cues,
        against,
    )


def _verdict(
    score: float,
    project: str | None,
    ticker: str | None,
    date: str | None,
    text: str,
    best_anchor: tuple[float, int] | None,
    cues: list[str],
    against: list[str],
) -> Detection:
    confidence = 1.0 / (1.0 + math.exp(-(score - THRESHOLD) / _SCALE))
    return Detection(
        is_announcement=score >= THRESHOLD,
        confidence=round(confidence, 4),
        score=round(score, 3),
        project=project,
        ticker=ticker,
        date=date,
        evidence=_evidence(text, best_anchor[1]) if best_anchor else _evidence(text, 0),
        cues=cues,
        against=against,
    )
