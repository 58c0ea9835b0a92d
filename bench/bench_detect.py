"""The offline TGE detector on real text: accuracy and throughput against the old rules.

Loads the labelled real excerpts (``tests/data/tge_real/dev.jsonl``) and, in
the same run, measures

* precision, recall, F1 and field accuracy (project, ticker, date, project and
  date) of :func:`agents.detect.detect` on the TEST split (tuning used the
  train split only), and of the keyword rules it replaced (the baseline);
* documents per second on one core (process CPU time, so other load on the
  machine does not count), for both.

Run: ``python bench/bench_detect.py [--seconds 3] [--split test]``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _old_keywords import score_text  # noqa: E402

from agents.detect import Detection, detect  # noqa: E402
from agents.detect.evaluate import Evaluation, evaluate, load_labelled  # noqa: E402
from agents.quality import normalise_date  # noqa: E402

DATA = ROOT / "tests" / "data" / "tge_real" / "dev.jsonl"


def new(row: dict[str, Any]) -> Detection:
    return detect(row.get("title") or "", row["text"], published=row.get("published"))


def old(row: dict[str, Any]) -> Detection:
    s = score_text(row.get("title") or "", row["text"])
    return Detection(
        is_announcement=s.is_candidate, confidence=1.0 if s.is_candidate else 0.0, score=s.score,
        project=s.project or None, ticker=s.symbol.upper() or None,
        date=normalise_date(s.date_text), evidence="",
    )


def throughput(fn: Callable[[dict[str, Any]], object], rows: list[dict[str, Any]],
               seconds: float) -> float:
    for r in rows:
        fn(r)  # warm caches and lazy imports
    n = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        for r in rows:
            fn(r)
        n += len(rows)
    return n / (time.process_time() - start)


def line(name: str, ev: Evaluation) -> str:
    return (
        f"| {name} | {ev.total} | {ev.tp} | {ev.fp} | {ev.fn} | {ev.precision:.3f} | "
        f"{ev.recall:.3f} | {ev.f1:.3f} | {ev.rate(ev.project_ok):.3f} | "
        f"{ev.rate(ev.ticker_ok):.3f} | {ev.rate(ev.date_ok):.3f} | {ev.rate(ev.both_ok):.3f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--split", default="test")
    args = p.parse_args()
    rows = load_labelled(DATA, split=args.split)
    all_rows = load_labelled(DATA)
    print(f"{len(rows)} labelled excerpts in the {args.split} split "
          f"({sum(r['label']['is_announcement'] for r in rows)} announcements)")
    print("| detector | n | tp | fp | fn | precision | recall | F1 | project | ticker | date "
          "| project+date |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(line("agents.detect", evaluate(rows, new)))
    print(line("old keyword rules (baseline)", evaluate(rows, old)))
    print(line("agents.detect, train split (tuned on)",
               evaluate(load_labelled(DATA, split="train"), new)))
    fast_new = throughput(new, all_rows, args.seconds)
    fast_old = throughput(old, all_rows, args.seconds)
    print(f"throughput on one core over all {len(all_rows)} excerpts: agents.detect "
          f"{fast_new:.0f} docs/s; old keyword rules {fast_old:.0f} docs/s "
          f"(ratio {fast_new / fast_old:.2f})")


if __name__ == "__main__":
    main()
