"""Scoring the detector against labelled excerpts: precision, recall, F1, field accuracy.

A labelled excerpt is a JSON object with ``id``, ``text`` (or ``title`` and
``body``), optional ``published``, and ``label`` with ``is_announcement``,
``project``, ``ticker``, ``date`` and optionally ``date_partial``
(``--MM-DD``: the text gives day and month, the publication date is unknown).

Field accuracy counts, over true positives, the ones whose project matches
(case, spacing and punctuation aside, or one name containing the other as
whole words: "Story" for "Story Protocol") and whose date matches (month and
day only against a ``date_partial``; a null label wants a null date).

Example:
    >>> from agents.detect.evaluate import same_project
    >>> same_project("Story", "Story Protocol"), same_project("io.net", "IO Net")
    (True, True)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.detect.detector import Detection, detect

__all__ = ["Evaluation", "evaluate", "load_labelled", "same_date", "same_project"]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", name.lower().replace(".", " ").replace("-", " ")).strip()


def same_project(found: str | None, label: str | None) -> bool:
    """Whether an extracted project name names the labelled project."""
    if not found or not label:
        return found == label
    a, b = _norm(found), _norm(label)
    if a.replace(" ", "") == b.replace(" ", ""):
        return True
    wa, wb = a.split(), b.split()
    short, long_ = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
    n = len(short)
    return n > 0 and any(long_[i : i + n] == short for i in range(len(long_) - n + 1))


def same_date(found: str | None, label: dict[str, Any]) -> bool:
    """Whether an extracted ISO date matches the label's date (or partial date)."""
    if label.get("date"):
        return bool(found == label["date"])
    partial = label.get("date_partial")
    if partial:
        return found is not None and found[-5:] == partial[-5:]
    return found is None


@dataclass(slots=True)
class Evaluation:
    """Counts and rates of one evaluation run."""

    total: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    project_ok: int = 0
    ticker_ok: int = 0
    date_ok: int = 0
    both_ok: int = 0
    false_positives: list[str] = field(default_factory=list)
    false_negatives: list[str] = field(default_factory=list)
    field_errors: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def rate(self, n: int) -> float:
        """``n`` as a share of the true positives."""
        return n / self.tp if self.tp else 0.0

    def summary(self) -> str:
        """One line of figures."""
        return (
            f"n={self.total} tp={self.tp} fp={self.fp} fn={self.fn} "
            f"precision={self.precision:.3f} recall={self.recall:.3f} f1={self.f1:.3f} "
            f"project={self.rate(self.project_ok):.3f} ticker={self.rate(self.ticker_ok):.3f} "
            f"date={self.rate(self.date_ok):.3f} project+date={self.rate(self.both_ok):.3f}"
        )


def load_labelled(path: str | Path, *, split: str | None = None) -> list[dict[str, Any]]:
    """Labelled excerpts of a JSON Lines file, optionally one split only."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if split is None or row.get("split") == split:
                rows.append(row)
    return rows


def _detect_row(row: dict[str, Any]) -> Detection:
    body = row.get("text") or row.get("body") or ""
    return detect(row.get("title") or "", body, published=row.get("published"))


def evaluate(
    rows: Iterable[dict[str, Any]],
    detector: Callable[[dict[str, Any]], Detection] = _detect_row,
) -> Evaluation:
    """Run ``detector`` on every labelled row and count."""
    ev = Evaluation()
    for row in rows:
        label = row["label"]
        d = detector(row)
        ev.total += 1
        if d.is_announcement and label["is_announcement"]:
            ev.tp += 1
            p = same_project(d.project, label.get("project"))
            t = (d.ticker or None) == (label.get("ticker") or None)
            dd = same_date(d.date, label)
            ev.project_ok += p
            ev.ticker_ok += t
            ev.date_ok += dd
            ev.both_ok += p and dd
            if not (p and dd and t):
                ev.field_errors.append(
                    f"{row['id']}: got {d.project!r}/{d.ticker!r}/{d.date!r} want "
                    f"{label.get('project')!r}/{label.get('ticker')!r}/"
                    f"{label.get('date') or label.get('date_partial')!r}"
                )
        elif d.is_announcement:
            ev.fp += 1
            ev.false_positives.append(
                f"{row['id']} [{label.get('category')}] score={d.score} cues={d.cues} "
                f"against={d.against}"
            )
        elif label["is_announcement"]:
            ev.fn += 1
            ev.false_negatives.append(
                f"{row['id']} score={d.score} cues={d.cues} against={d.against} "
                f"p={d.project!r} t={d.ticker!r}"
            )
    return ev
