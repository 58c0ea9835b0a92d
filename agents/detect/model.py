"""The detector's decision: a logistic model over cue and field features.

Each feature is general: for every cue of :mod:`agents.detect.lexicon`, how
prominently it occurs (0 absent, 0.5 in the trailing text, 1 in the lead,
1.6 in the headline); then whether a ticker, a project and an event date were
found, whether the date gives its year, whether it lies well before the
publication date, whether "TGE" appears with no crypto vocabulary at all, and
the length of the text. The weights (``weights.json`` beside this module) are
fitted on the TRAIN split of the labelled real excerpts only, with L2
regularisation chosen by cross-validation on that split
(``python -m agents.detect.fit``); the output is a probability.

Example:
    >>> from agents.detect.model import MODEL
    >>> 0.0 < MODEL.threshold < 1.0
    True
    >>> len(MODEL.weights) == len(MODEL.names)
    True
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from importlib import resources

from agents.detect import lexicon

__all__ = ["FIELD_FEATURES", "MODEL", "Model", "cue_features", "feature_names"]

#: Features after the cue features, in order.
FIELD_FEATURES = (
    "has ticker", "has project", "has date", "date has year", "date long before publication",
    "non-crypto TGE", "log length",
)


def feature_names() -> tuple[str, ...]:
    """Names of every feature, in the order of the vectors."""
    return cue_features() + FIELD_FEATURES


def cue_features() -> tuple[str, ...]:
    """Names of the cue features: one per concept, whatever the language."""
    return tuple(dict.fromkeys(c.concept for c in lexicon.POSITIVE + lexicon.NEGATIVE))


@dataclass(frozen=True, slots=True)
class Model:
    """Weights of the logistic model and its decision threshold."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float

    def logit(self, x: list[float]) -> float:
        """The model's log-odds for feature vector ``x``."""
        return self.bias + math.fsum(w * v for w, v in zip(self.weights, x, strict=True))

    @property
    def threshold_logit(self) -> float:
        """Log-odds at the decision threshold."""
        return math.log(self.threshold / (1.0 - self.threshold))

    def field_headroom(self) -> float:
        """Most the field features (ticker, project, date) can add to the log-odds."""
        n = len(self.names) - len(FIELD_FEATURES)
        return math.fsum(max(0.0, w) for w in self.weights[n : n + 5])


@functools.cache
def _load() -> Model:
    raw = json.loads(
        resources.files("agents.detect").joinpath("weights.json").read_text(encoding="utf-8")
    )
    names = tuple(raw["names"])
    if names != feature_names():
        raise RuntimeError(
            "agents/detect/weights.json was fitted for other features; refit it with "
            "python -m agents.detect.fit"
        )
    return Model(names, tuple(raw["weights"]), float(raw["bias"]), float(raw["threshold"]))


MODEL = _load()
