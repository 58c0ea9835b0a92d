"""The TGE job on live sources (--sources TOML): feeds, JSON APIs and pages over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents import default_swarm
from agents.corpus import load_sources
from agents.fetch.parse import parse_feed, parse_html, parse_json
from agents.job import run_tge_job
from swarm import Swarm
from swarm.errors import ConfigError
from tests.agents.web_server import Site, page, real_excerpts, rss


def test_parsers_on_real_excerpts() -> None:
    rows = real_excerpts(3)
    posts = parse_feed(rss(rows))
    assert [p["id"] for p in posts] == [r["id"] for r in rows]
    assert posts[0]["body"] == rows[0]["text"] and posts[0]["url"] == rows[0]["url"]
    [doc] = parse_html(page(rows[1]), "http://x/1")
    assert doc["body"].strip() == str(rows[1]["text"]).strip() and "Subscribe" not in doc["body"]
    api = parse_json('{"data": {"items": [{"uid": 7, "headline": "h", "text": "t"}]}}',
                     items="data.items", fields={"id": "uid", "title": "headline"})
    assert api == [{"id": "7", "title": "h", "body": "t", "published": None, "url": None}]
    with pytest.raises(ValueError, match="no list"):
        parse_json("{}", items="data")


def write_sources(tmp_path: Path, sites: list[Site], fetch: str) -> Path:
    a, b, c = sites[0], sites[1], sites[2]
    path = tmp_path / "sources.toml"
    path.write_text(
        f"""
[fetch]
{fetch}

[[source]]
id = "feed"
kind = "rss"
url = "{a.base}/feed.xml"

[[source]]
id = "api"
kind = "json"
url = "{b.base}/api/posts"
items = "posts"
fields = {{ body = "text" }}

[[source]]
id = "page"
kind = "html"
url = "{c.base}/page/3"

[[source]]
id = "private"
kind = "html"
url = "{a.base}/private/1"
""",
        encoding="utf-8",
    )
    return path


async def test_job_on_live_sources_with_conditional_get(sites: list[Site], tmp_path: Path) -> None:
    path = write_sources(tmp_path, sites, 'allow = ["127.0.0.0/8"]\nper_host_rate = 50.0')
    corpus = load_sources(path)
    async with Swarm(agents=default_swarm()) as swarm:
        first = await run_tge_job(swarm, corpus=corpus, task_timeout=20)
        second = await run_tge_job(swarm, corpus=corpus, task_timeout=20)
    stats = {s.source_id: s for s in first.source_stats}
    assert stats["feed"].fetched == 20 and stats["api"].fetched == 5 and stats["page"].fetched == 1
    # robots.txt of the site disallows /private: refused, not retried.
    assert any("private" in e and "robots.txt" in e for e in first.errors)
    assert first.announcements and all(a.doc_ids for a in first.announcements)
    assert sites[0].conditional_hits == 1
    assert {s.source_id: s.skipped for s in second.source_stats}["feed"] == "not modified"


async def test_local_sources_are_refused_without_the_allow_list(
    sites: list[Site], tmp_path: Path
) -> None:
    corpus = load_sources(write_sources(tmp_path, sites, ""))
    async with Swarm(agents=default_swarm()) as swarm:
        report = await run_tge_job(swarm, corpus=corpus, task_timeout=20)
    assert report.documents == 0 and len(report.errors) == 4
    assert all("is loopback" in e for e in report.errors)
    assert all(s.served == 0 for s in sites)


def test_bad_sources_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    for text, message in [
        ("[[source]]\nid='x'\nkind='ftp'\nurl='http://a/'", "kind must be one of"),
        ("[[source]]\nid='x'\nkind='rss'\nurl='file:///etc'", "url must be an http"),
        ("[fetch]\nper_host_rate='fast'\n[[source]]\nid='x'\nkind='rss'\nurl='http://a/'",
         "per_host_rate must be a float"),
        ("[fetch]\nturbo=true\n[[source]]\nid='x'\nkind='rss'\nurl='http://a/'",
         "unknown settings turbo"),
        ("title = 'none'", "no \\[\\[source\\]\\] table"),
    ]:
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_sources(bad)
