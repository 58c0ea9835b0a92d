"""Fetched bodies into posts: RSS/Atom with feedparser, HTML with selectolax, JSON APIs.

Each parser returns raw post dicts (``id``, ``title``, ``body``, ``published``,
``url``) for the scraping specialist, which validates them like any other
entries. HTML is reduced to its readable text: scripts, styles, navigation,
headers, footers, forms and asides are dropped, and the ``<article>`` (or
``<main>``, or the body) is kept.

Example:
    >>> from agents.fetch.parse import parse_html
    >>> html = ("<html><head><title>T</title></head><body><nav>Menu</nav>"
    ...         "<article><p>Binance will list X.</p></article></body></html>")
    >>> parse_html(html, "https://example.org/a")[0]["body"]
    'Binance will list X.'
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from typing import Any

import feedparser
from selectolax.lexbor import LexborHTMLParser as HTMLParser

__all__ = ["html_text", "parse_feed", "parse_html", "parse_json"]

_DROP = "script, style, noscript, nav, header, footer, form, aside, iframe, svg, template"


def html_text(html: str) -> str:
    """Readable text of an HTML fragment or page (block elements become lines)."""
    tree = HTMLParser(html)
    for node in tree.css(_DROP):
        node.decompose()
    root = tree.css_first("article") or tree.css_first("main") or tree.body or tree.root
    if root is None:
        return ""
    blocks = [n.text(separator=" ", strip=True) for n in root.css("h1, h2, h3, p, li")]
    text = "\n".join(b for b in blocks if b)
    return text or root.text(separator=" ", strip=True)


def _iso(parsed: Any) -> str:
    if not parsed:
        return ""
    return dt.datetime.fromtimestamp(calendar.timegm(parsed), dt.UTC).isoformat()


def parse_feed(text: str) -> list[dict[str, Any]]:
    """Entries of an RSS or Atom feed as posts."""
    feed = feedparser.parse(text)
    posts = []
    for e in feed.entries:
        content = e.get("content") or []
        body_html = content[0].get("value", "") if content else e.get("summary", "")
        posts.append({
            "id": e.get("id") or e.get("link") or "",
            "title": html_text(e.get("title", "")) if "<" in e.get("title", "") else
            e.get("title", ""),
            "body": html_text(body_html) if "<" in body_html else body_html,
            "published": _iso(e.get("published_parsed") or e.get("updated_parsed")),
            "url": e.get("link", ""),
        })
    return posts


def parse_html(text: str, url: str) -> list[dict[str, Any]]:
    """One page as one post (its URL is its id)."""
    tree = HTMLParser(text)
    title_node = tree.css_first("h1") or tree.css_first("title")
    title = title_node.text(strip=True) if title_node is not None else ""
    published = ""
    meta = tree.css_first('meta[property="article:published_time"]')
    if meta is not None:
        published = meta.attributes.get("content") or ""
    body = html_text(text)
    if title and body.startswith(title):
        body = body[len(title):].lstrip()
    return [{"id": url, "title": title, "body": body, "published": published, "url": url}]


def _path(obj: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def parse_json(text: str, *, items: str = "", fields: dict[str, str] | None = None) -> list[Any]:
    """Posts of a JSON API answer.

    Args:
        text: The body.
        items: Dotted path to the list of items ("" when the body is the list).
        fields: Post field -> dotted path in an item (defaults: the same name;
            ``body`` falls back to ``text``).

    Raises:
        ValueError: The body is not JSON or the path does not lead to a list.
    """
    data = json.loads(text)
    found = _path(data, items) if items else data
    if not isinstance(found, list):
        raise ValueError(f"no list at {items or 'the top level'!r} of the JSON answer")
    mapping = {"id": "id", "title": "title", "body": "body", "published": "published",
               "url": "url", **(fields or {})}
    posts: list[Any] = []
    for item in found:
        if not isinstance(item, dict):
            posts.append(item)  # reported as malformed downstream
            continue
        post = {key: _path(item, path) for key, path in mapping.items()}
        if post["body"] is None:
            post["body"] = item.get("text")
        if post["title"] is None:
            post["title"] = ""
        if isinstance(post["id"], int):
            post["id"] = str(post["id"])
        posts.append(post)
    return posts
