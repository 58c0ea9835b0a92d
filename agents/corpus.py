"""Corpora of the TGE job: the bundled real excerpts, or your own JSON Lines file.

The bundled corpus is ``agents/data/tge_excerpts.jsonl``: excerpts quoted
verbatim from public pages (news, exchange notices, project blogs, forums, in
several languages), each with its source URL and a label (announcement or
not; project, ticker and event date). The job reports its precision and
recall against those labels. Excerpts are grouped into one source per
language; two demonstration sources show retries and the circuit breaker
without a network: ``flaky-mirror`` (its first two fetches fail) and
``down-mirror`` (every fetch fails; its circuit opens).

:func:`load_input` reads a user's JSON Lines file: one document a line,
``{"id", "text"}`` or ``{"id", "title", "body"}``, optional ``source``,
``url``, ``published`` (and ``label``, to be scored against). A line that is
not such an object is reported by its number and skipped.

Example:
    >>> from agents.corpus import load_corpus
    >>> corpus = load_corpus()
    >>> len(corpus.labels) >= 200, "down-mirror" in corpus.source_ids
    (True, True)
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from swarm.errors import ConfigError, TransportError

__all__ = [
    "Corpus",
    "MalformedLine",
    "SourceSpec",
    "SourceUnavailable",
    "load_corpus",
    "load_input",
    "load_sources",
    "parse_lines",
]

_EXCERPTS = "tge_excerpts.jsonl"
#: Fetches of the flaky demonstration source that fail before one succeeds.
_FLAKY_FAILURES = 2


class SourceUnavailable(TransportError):
    """A (simulated) source did not answer; the fetch may be retried."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSpec:
    """One source of a corpus.

    Attributes:
        id: Source id.
        name: Display name.
        kind: ``inline`` (posts carried along), ``rss``, ``json`` or ``html``.
        posts: Raw entries (inline sources).
        url: Where a live source is fetched from.
        flaky_failures: The first this many fetch attempts fail (demonstration).
        down: Every fetch fails (demonstration).
        options: Kind-specific options (JSON: ``items``, ``fields``).
    """

    id: str
    name: str
    kind: str = "inline"
    posts: tuple[Any, ...] = ()
    url: str = ""
    flaky_failures: int = 0
    down: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def fetch(self, attempt: int) -> tuple[Any, ...]:
        """Return the inline entries, failing as the demonstration flags say.

        Raises:
            SourceUnavailable: The simulated source is down for this attempt.
        """
        if self.down:
            raise SourceUnavailable(f"{self.id}: connection refused")
        if attempt <= self.flaky_failures:
            raise SourceUnavailable(f"{self.id}: HTTP 503 on attempt {attempt}")
        return self.posts


@dataclass(frozen=True, slots=True)
class MalformedLine:
    """A line of an input file that is not a document, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Corpus:
    """Sources in order, and the labels of the documents that have one.

    Attributes:
        sources: Every source.
        labels: Document id -> label (``is_announcement``, ``project``,
            ``ticker``, ``date``, ``date_partial``).
        malformed: Input lines skipped as malformed.
        fetch: Fetch limits of live sources (a ``[fetch]`` table of a sources file).
    """

    sources: tuple[SourceSpec, ...]
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    malformed: tuple[MalformedLine, ...] = ()
    fetch: dict[str, Any] = field(default_factory=dict)

    def source(self, source_id: str) -> SourceSpec:
        """Return a source by id.

        Raises:
            KeyError: No such source.
        """
        for spec in self.sources:
            if spec.id == source_id:
                return spec
        raise KeyError(source_id)

    @property
    def source_ids(self) -> list[str]:
        """Ids of every source."""
        return [s.id for s in self.sources]


def _document(obj: Any) -> tuple[dict[str, Any], str | None] | str:
    """The post of one decoded line and its source, or why it is malformed."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    doc_id = obj.get("id")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        return "missing or empty \"id\""
    text, title, body = obj.get("text"), obj.get("title"), obj.get("body")
    if body is None:
        body = text
    if title is None:
        title = ""
    if not isinstance(body, str) or not isinstance(title, str):
        return "\"text\" (or \"title\" and \"body\") must be strings"
    if not (title.strip() or body.strip()):
        return "empty text"
    post: dict[str, Any] = {"id": doc_id, "title": title, "body": body}
    for key in ("url", "published"):
        value = obj.get(key)
        if isinstance(value, str):
            post[key] = value
    label = obj.get("label")
    if isinstance(label, dict) and isinstance(label.get("is_announcement"), bool):
        post["label"] = label
    source = obj.get("source")
    return post, source if isinstance(source, str) and source.strip() else None


def parse_lines(
    lines: list[str], *, default_source: str
) -> tuple[dict[str, list[dict[str, Any]]], list[MalformedLine]]:
    """Posts grouped by source, and the malformed lines (1-based numbers)."""
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    malformed: list[MalformedLine] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            malformed.append(MalformedLine(number, f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        got = _document(obj)
        if isinstance(got, str):
            malformed.append(MalformedLine(number, got))
            continue
        post, source = got
        if post["id"] in seen:
            malformed.append(MalformedLine(number, f"duplicate id {post['id']!r}"))
            continue
        seen.add(post["id"])
        by_source[source or default_source].append(post)
    return dict(by_source), malformed


def _corpus(
    by_source: dict[str, list[dict[str, Any]]],
    malformed: list[MalformedLine],
    extra: tuple[SourceSpec, ...] = (),
) -> Corpus:
    sources = tuple(
        SourceSpec(id=sid, name=sid, posts=tuple(posts)) for sid, posts in by_source.items()
    )
    labels = {
        p["id"]: p["label"]
        for spec in sources + extra
        for p in spec.posts
        if isinstance(p, dict) and "label" in p
    }
    return Corpus(sources + extra, labels, tuple(malformed))


def load_input(path: str | Path) -> Corpus:
    """A corpus of your own JSON Lines file (see the module docstring).

    Raises:
        ConfigError: The file cannot be read, or has no document at all.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read input file {str(path)!r}: {exc}") from exc
    # Decoded line by line: one line that is not UTF-8 is reported and skipped like any
    # other malformed line, not a reason to refuse the whole file. A leading BOM is fine.
    lines: list[str] = []
    undecodable: list[MalformedLine] = []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(chunk.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            undecodable.append(MalformedLine(number, f"not UTF-8 text: {exc.reason} "
                                                     f"(byte {exc.start + 1})"))
            lines.append("")
    by_source, malformed = parse_lines(lines, default_source="input")
    malformed = sorted(malformed + undecodable, key=lambda m: m.line)
    if not by_source:
        detail = f" ({len(malformed)} malformed lines; first: {malformed[0]})" if malformed else ""
        raise ConfigError(f"input file {str(path)!r} has no valid document{detail}")
    return _corpus(by_source, malformed)


@functools.cache
def load_corpus() -> Corpus:
    """Load (once) the bundled corpus of real excerpts (see the module docstring)."""
    try:
        text = (
            resources.files("agents").joinpath("data").joinpath(_EXCERPTS)
            .read_text(encoding="utf-8")
        )
    except OSError as exc:
        raise ConfigError(f"bundled corpus file {_EXCERPTS!r} is missing: {exc}") from exc
    lines = text.splitlines()
    languages = [json.loads(line).get("language") or "other" for line in lines if line.strip()]
    by_source, malformed = parse_lines(lines, default_source="excerpts")
    [posts] = by_source.values()
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for post, language in zip(posts, languages, strict=True):
        grouped[f"excerpts-{language}"].append(post)
    # The flaky mirror carries one language's excerpts: its retries matter to the result.
    flaky_lang = "excerpts-pt"
    demo = (
        SourceSpec(
            id="flaky-mirror", name="flaky-mirror", posts=tuple(grouped.pop(flaky_lang, ())),
            flaky_failures=_FLAKY_FAILURES,
        ),
        SourceSpec(id="down-mirror", name="down-mirror", down=True),
    )
    return _corpus(dict(sorted(grouped.items())), malformed, demo)


_KINDS = ("rss", "json", "html")


def load_sources(path: str | Path) -> Corpus:
    """Live sources from a TOML file, with its ``[fetch]`` table.

    The file has one ``[[source]]`` table per source: ``id``, ``kind``
    (``rss`` for RSS/Atom feeds, ``json`` for JSON APIs, ``html`` for pages),
    ``url``, and for JSON ``items`` and ``fields``. The optional ``[fetch]``
    table sets :class:`~agents.fetch.FetchSettings` fields (per-host rate and
    concurrency, caps, ``allow`` for local networks, off by default).

    Raises:
        ConfigError: The file cannot be read or a source is invalid.
    """
    import tomllib

    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read sources file {str(path)!r}: {exc}") from exc
    sources: list[SourceSpec] = []
    for n, entry in enumerate(raw.get("source", []), start=1):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: source #{n} is not a table")
        sid, kind, url = entry.get("id"), entry.get("kind"), entry.get("url")
        if not isinstance(sid, str) or not sid:
            raise ConfigError(f"{path}: source #{n} needs an id")
        if kind not in _KINDS:
            raise ConfigError(f"{path}: source {sid!r}: kind must be one of {', '.join(_KINDS)}")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}: source {sid!r}: url must be an http(s) URL")
        options = {k: entry[k] for k in ("items", "fields") if k in entry}
        sources.append(SourceSpec(id=sid, name=entry.get("name", sid), kind=kind, url=url,
                                  options=options))
    if not sources:
        raise ConfigError(f"{path}: no [[source]] table")
    if len({s.id for s in sources}) != len(sources):
        raise ConfigError(f"{path}: source ids must be unique")
    fetch = raw.get("fetch", {})
    if not isinstance(fetch, dict):
        raise ConfigError(f"{path}: [fetch] must be a table")
    from agents.fetch import fetch_settings

    fetch_settings(fetch)  # refuse a bad table here, not in every scrape task
    return Corpus(tuple(sources), fetch=fetch)
