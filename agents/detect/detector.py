"""The offline TGE detector: decide, then extract, with a calibrated confidence.

:func:`detect` answers two separate questions about one document:

1. *Is it an announcement* of a specific project's token generation event,
   token launch or listing at launch? Launch cues (:data:`~agents.detect.lexicon.POSITIVE`)
   and cues against (guides, rumours, denials, delays, scams, later listings,
   price talk, retrospectives; :data:`~agents.detect.lexicon.NEGATIVE`) are
   found with their prominence (headline, lead or trailing text); "TGE" in a
   text with no crypto vocabulary at all is another TGE. A logistic model
   (:mod:`agents.detect.model`) weighs them with the fields found into a
   probability. A named project or ticker is required: an announcement is
   of *something*.
2. *What* project, ticker and date (:mod:`agents.detect.extract`).

:attr:`Detection.confidence` is the model's probability;
:attr:`Detection.uncertain` marks the band around the threshold where a
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
from dataclasses import dataclass

import msgspec

from agents.detect.dates import DateMention, parse_published
from agents.detect.extract import extract_date, extract_project, extract_ticker
from agents.detect.lexicon import CRYPTO_CONTEXT, NEGATIVE, POSITIVE, CueScanner
from agents.detect.model import MODEL, cue_features

__all__ = [
    "THRESHOLD", "UNCERTAIN_BAND", "Analysis", "Detection", "analyse", "detect", "field_features",
]

#: Confidence at which a document counts as an announcement.
THRESHOLD = MODEL.threshold
#: Confidence range in which :attr:`Detection.uncertain` is true.
UNCERTAIN_BAND = (0.3, 0.85)
_SCANNER = CueScanner(POSITIVE + NEGATIVE)
_CONCEPTS = cue_features()
#: Characters of body, after the headline, that count as the lead.
_LEAD = 400


class Detection(msgspec.Struct, frozen=True, kw_only=True):
    """The detector's verdict on one document.

    Attributes:
        is_announcement: The document announces a specific project's TGE,
            token launch or listing at launch.
        confidence: The model's probability that it is one; :data:`THRESHOLD` decides.
        score: The log-odds behind ``confidence``.
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
    stop = text.rfind(". ", 0, at)
    start = max(stop + 2 if stop != -1 else 0, text.rfind("\n", 0, at) + 1, at - 200, 0)
    ends = [i for i in (text.find(". ", at), text.find("\n", at)) if i != -1]
    end = min([*ends, at + 240, len(text)])
    return " ".join(text[start : end + 1].split())


@dataclass(slots=True)
class Analysis:
    """What :func:`detect` computes of a text before deciding (also used to fit the model)."""

    text: str
    title_end: int
    published: dt.date | None
    cue_features: list[float]
    anchors: tuple[int, ...]
    best_anchor: int | None
    cues: list[str]
    against: list[str]
    non_crypto_tge: bool


def analyse(title: str, body: str = "", *, published: str | dt.date | None = None) -> Analysis:
    """The cue features of one document (no field extraction)."""
    title = title.strip()
    text = f"{title}\n{body.strip()}" if title else body.strip()
    title_end = len(title)
    pub = published if isinstance(published, dt.date) else parse_published(published)
    found = _SCANNER.scan(text, text.lower())
    features = dict.fromkeys(_CONCEPTS, 0.0)
    cues: list[str] = []
    against: list[str] = []
    anchors: list[int] = []
    best: tuple[float, int] | None = None
    non_crypto = False
    for cue in POSITIVE + NEGATIVE:
        hits = found.get(cue.name)
        if not hits:
            continue
        if cue.name == "TGE" and CRYPTO_CONTEXT.search(text) is None:
            # "TGE" in a text with no crypto word is another TGE (a disease, an exchange).
            non_crypto = True
            against.append("non-crypto TGE")
            continue
        factor = max(_position_factor(h, title_end) for h in hits)
        features[cue.concept] = max(features[cue.concept], factor)
        (cues if cue in POSITIVE else against).append(cue.name)
        if cue.event:
            anchors += hits
            gained = cue.weight * factor
            if best is None or gained > best[0]:
                best = (gained, hits[0])
    return Analysis(
        text, title_end, pub, list(features.values()), tuple(anchors),
        best[1] if best else None, cues, against, non_crypto,
    )


def field_features(
    a: Analysis, ticker: str | None, project: str | None, mention: DateMention | None
) -> list[float]:
    """The field features (see :data:`~agents.detect.model.FIELD_FEATURES`)."""
    date = mention.value if mention else None
    long_before = date is not None and a.published is not None and (a.published - date).days > 5
    return [
        float(ticker is not None), float(project is not None), float(mention is not None),
        float(mention is not None and mention.has_year), float(long_before),
        float(a.non_crypto_tge), math.log(len(a.text) + 1.0) / 8.0,
    ]


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
    a = analyse(title, body, published=published)
    model = MODEL
    n = len(a.cue_features)
    partial = model.bias + math.fsum(
        w * v for w, v in zip(model.weights[:n], a.cue_features, strict=True)
    )
    # The non-field features the model sees without extracting anything.
    rest = field_features(a, None, None, None)[5:]
    partial += math.fsum(w * v for w, v in zip(model.weights[n + 5 :], rest, strict=True))
    if partial + model.field_headroom() < model.threshold_logit:
        # Clearly no announcement: no field could change the verdict.
        return _verdict(partial, None, None, None, a)
    ticker = extract_ticker(a.text, a.title_end, a.anchors)
    project = extract_project(a.text, ticker, a.anchors)
    mention = extract_date(a.text, a.published, a.anchors)
    logit = model.logit(a.cue_features + field_features(a, ticker, project, mention))
    if mention is not None and mention.value is not None and a.published is not None and (
        a.published - mention.value
    ).days > 5:
        a.against.append("event long before publication")
    if project is None and ticker is None:
        # An announcement is of something: without a name it is at best background.
        a.against.append("no project named")
        logit = min(logit, model.threshold_logit - 1.0)
    return _verdict(logit, project, ticker, mention.iso if mention else None, a)


def _verdict(
    logit: float,
    project: str | None,
    ticker: str | None,
    date: str | None,
    a: Analysis,
) -> Detection:
    confidence = 1.0 / (1.0 + math.exp(-logit))
    at = a.best_anchor if a.best_anchor is not None else 0
    return Detection(
        is_announcement=confidence >= THRESHOLD,
        confidence=round(confidence, 4),
        score=round(logit, 3),
        project=project,
        ticker=ticker,
        date=date,
        evidence=_evidence(a.text, at),
        cues=a.cues,
        against=a.against,
    )
