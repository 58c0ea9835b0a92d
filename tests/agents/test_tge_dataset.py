"""The real-text TGE development set and the bundled real corpus drawn from it are well formed.

The set (``tests/data/tge_real/dev.jsonl``) holds excerpts quoted verbatim from public pages,
each with its source URL and hand labels; see ``tests/data/tge_real/README.md``. These tests
guard its shape: schema, size, label vocabulary and consistency, a train/test split that never
puts one source page on both sides, and the bundled corpus in ``agents/data`` staying a labelled
subset of the train split.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "tests" / "data" / "tge_real" / "dev.jsonl"

CATEGORIES = {
    "announcement",
    "rumour",
    "denial",
    "guide",
    "delayed_or_cancelled",
    "later_listing",
    "retrospective",
    "airdrop_scam",
    "other_tge_sense",
    "plain_negative",
}
HARD_NEGATIVES = CATEGORIES - {"announcement", "plain_negative"}
RECORD_KEYS = {"id", "text", "url", "published", "language", "label", "split"}
LABEL_KEYS = {"is_announcement", "project", "ticker", "date", "category"}


def _load(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"{path.name}:{number}: blank line"
        rows.append(json.loads(line))
    return rows


@pytest.fixture(scope="module")
def dev() -> list[dict[str, Any]]:
    return _load(DEV)


def _iso(value: str) -> dt.date:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value), value
    return dt.date.fromisoformat(value)


def test_records_have_the_documented_schema(dev: list[dict[str, Any]]) -> None:
    for row in dev:
        assert RECORD_KEYS <= row.keys() <= RECORD_KEYS | {"title"}, row["id"]
        label = row["label"]
        assert LABEL_KEYS <= label.keys() <= LABEL_KEYS | {"date_partial"}, row["id"]
        assert isinstance(row["text"], str) and 20 <= len(row["text"]) <= 1000, row["id"]
        assert row["text"] == row["text"].strip(), row["id"]
        assert row["url"].startswith(("http://", "https://")), row["id"]
        assert re.fullmatch(r"[a-z]{2}", row["language"]), row["id"]
        assert row["split"] in {"train", "test"}, row["id"]
        assert label["category"] in CATEGORIES, row["id"]
        assert isinstance(label["is_announcement"], bool), row["id"]
        if row["published"] is not None:
            _iso(row["published"])
        if "title" in row:
            assert isinstance(row["title"], str) and row["title"].strip(), row["id"]


def test_ids_are_stable_hashes_and_texts_unique(dev: list[dict[str, Any]]) -> None:
    for row in dev:
        digest = hashlib.sha1(f"{row['url']}\n{row['text']}".encode()).hexdigest()[:10]
        assert row["id"] == f"tge-{digest}"
    assert len({row["id"] for row in dev}) == len(dev)
    assert len({row["text"] for row in dev}) == len(dev)


def test_size_and_mix(dev: list[dict[str, Any]]) -> None:
    assert len(dev) >= 200
    categories = collections.Counter(row["label"]["category"] for row in dev)
    share = {
        "announcement": categories["announcement"] / len(dev),
        "hard": sum(categories[c] for c in HARD_NEGATIVES) / len(dev),
        "plain": categories["plain_negative"] / len(dev),
    }
    assert 0.30 <= share["announcement"] <= 0.50, share
    assert 0.35 <= share["hard"] <= 0.55, share
    assert 0.08 <= share["plain"] <= 0.25, share
    assert all(categories[c] >= 5 for c in CATEGORIES), categories
    languages = collections.Counter(row["language"] for row in dev)
    assert sum(n for lang, n in languages.items() if lang != "en") >= 25, languages
    for lang in ("it", "pt", "fr", "es", "de"):
        assert languages[lang] >= 5, languages
    non_english_announcements = [
        row for row in dev if row["language"] != "en" and row["label"]["is_announcement"]
    ]
    assert len(non_english_announcements) >= 10


def test_labels_are_consistent(dev: list[dict[str, Any]]) -> None:
    for row in dev:
        label = row["label"]
        assert label["is_announcement"] == (label["category"] == "announcement"), row["id"]
        if label["is_announcement"]:
            assert isinstance(label["project"], str) and label["project"].strip(), row["id"]
        else:
            # Only a launch has an event date; a negative is dated by nothing.
            assert label["date"] is None and "date_partial" not in label, row["id"]
        if label["ticker"] is not None:
            assert re.fullmatch(r"[0-9A-Z]{1,12}", label["ticker"]), row["id"]
        if label["date"] is not None:
            _iso(label["date"])
        if "date_partial" in label:
            # A day and month without a year, given only when no year can be resolved.
            assert label["date"] is None, row["id"]
            month, day = re.fullmatch(r"--(\d{2})-(\d{2})", label["date_partial"]).groups()  # type: ignore[union-attr]
            dt.date(2024, int(month), int(day))


def test_split_is_by_source_page_and_near_sixty_forty(dev: list[dict[str, Any]]) -> None:
    splits_of_url: dict[str, set[str]] = collections.defaultdict(set)
    for row in dev:
        splits_of_url[row["url"]].add(row["split"])
    shared = [url for url, splits in splits_of_url.items() if len(splits) > 1]
    assert shared == []
    test_share = sum(row["split"] == "test" for row in dev) / len(dev)
    assert 0.35 <= test_share <= 0.45
    for split in ("train", "test"):
        rows = [row for row in dev if row["split"] == split]
        assert any(row["label"]["is_announcement"] for row in rows)
        assert {row["label"]["category"] for row in rows} == CATEGORIES, split
        assert any(row["language"] != "en" and row["label"]["is_announcement"] for row in rows)
