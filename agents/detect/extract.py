"""Field extraction: the project, its ticker and the event date of a text.

Extraction is separate from the decision "is this an announcement": it runs
on any text and returns what it can, each field ``None`` when the text does
not give it.

* Ticker: ``Name (XYZ)``, ``$XYZ``, ``XYZ/USDT``, ``the XYZ token``,
  ``ticker: XYZ``; upper-case words that are not tickers (TGE, DEX, FDV,
  UTC...) never qualify, and quote assets (USDT, BNB...) only in brackets.
  The candidate mentioned most, nearest the event and in the headline wins.
* Project: the name before ``(XYZ)``, ``Name's $XYZ``, ``Name TGE``,
  ``Name token``, ``TGE of Name``, ``token di/de/von Name``; venues
  (exchanges) and filler ("Introducing", "Will List") are stripped.
* Date: the date mention nearest an event cue, bylines and datelines
  excluded; years resolved against the publication date.

Example:
    >>> from agents.detect.extract import extract_ticker, extract_project
    >>> text = "Binance Will List Lombard (BARD) with Seed Tag Applied"
    >>> extract_ticker(text, len(text), ()), extract_project(text, "BARD", ())
    ('BARD', 'Lombard')
"""

from __future__ import annotations

import datetime as dt
import re

from agents.detect import lexicon
from agents.detect.dates import DateMention, find_dates

__all__ = ["extract_date", "extract_project", "extract_ticker"]

_SYM = r"[A-Z][A-Z0-9]{1,11}|[0-9][A-Z][A-Z0-9]{1,10}"
_TICKER_PATTERNS: tuple[tuple[re.Pattern[str], float], ...] = (
    (re.compile(rf"\(\s*\$?({_SYM})\s*\)"), 3.0),
    (re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{1,11})\b(?![.,]\d)"), 2.5),
    (re.compile(rf"\b({_SYM})\s?/\s?(?:USDT|USDC|FDUSD|USD1|TRY|EUR|BNB|BTC|KRW|USD)\b"), 2.0),
    (re.compile(rf"\b(?i:ticker|symbol|simbolo|símbolo|symbole)\s*[:：]?\s*\$?({_SYM})\b"), 3.0),
    (re.compile(rf"\b({_SYM}) (?:tokens?|coins?|airdrop|TGE|token generation)\b"), 1.5),
    (re.compile(rf"\b(?:tokens?|jetons?|gettone|moeda|criptomoeda|токен\w*)[,:]? (?:a |la |o )?\$?"
                rf"({_SYM})\b"), 1.5),
    (re.compile(rf"\b({_SYM})\s*\(\s*[A-Z][\w .]{{1,30}}\)"), 1.0),
)

_NAME_WORD = r"(?:[A-Z0-9][\w&'-]*(?:\.[a-z]\w*)?|[a-z]+[A-Z][\w-]*|[a-z]+\.[a-z]{2,})"
_NAME_RUN = rf"((?:{_NAME_WORD}[ \t]){{0,3}}{_NAME_WORD})"
_FILLER = frozenset(
    """introducing introduces announcing announces announcement new listing listings list lists
    will to the a an official breaking update updates today just now notice binance's launchpool
    launchpad hodler airdrops airdrop megadrop alpha and with on for of in at by is are as from
    support supports adds add join earn project token tokens coin trading spot pre-market
    premarket futures perpetual reminder important re: fwd: tge update: news: why how what
    ann ann: [ann] live x exclusive: exclusive tge generation event events launch un una um uma
    une ein eine el la le il lo o os les der die das what before after when once this that these
    its their our his her it they we you if all every each many most some
    native governance utility public sale first initial mainnet
    crypto airdrop's community users holders launches launched launching announces announced
    unveils unveiled debuts debuted goes lists listed question questions confirms confirmed
    reveals revealed sets set opens opened begins starts kicks plans says""".split()
)
#: What follows a project's name: "Name TGE", "Name has announced", "Name, the ...".
_AFTER_NAME = tuple(
    re.compile(p)
    for p in (
        r"(?:'s|’s)? (?:TGE|[Tt]oken [Gg]eneration|[Tt]oken [Ll]aunch|token|[Aa]irdrop|"
        r"[Mm]ainnet)\b",
        r", (?:the|a|an|which|un|una|um|uma|une|ein|eine|der|die|das|el|la|il|lo|o|le) "
        r"| \((?:the|a|an) ",
        r" (?:has |have )?(?:officially )?(?:announced|announces|launched|launches|unveiled|"
        r"unveils|will hold|will launch|is preparing|prepares|confirmed|revealed|opened|"
        r"ha annunciato|ha lanciato|anunciou|lançou|a annoncé|a lancé|anunció|lanzó|kündigt|"
        r"startet|объявил\w*)\b",
    )
)
#: What precedes a project's name: "TGE of Name", "token di Name", "project Name".
_BEFORE_NAME = tuple(
    re.compile(p)
    for p in (
        r"\b(?:TGE|token generation event|launch|lancio|lançamento|lancement|lanzamiento) "
        r"(?:of|for|di|del|da|do|de|du|von|des) ",
        r"\b(?:token|jeton|moeda|gettone|Token) (?:di|da|de|du|del|von|des|of) ",
        r"\b(?:project|progetto|projeto|projet|proyecto|Projekt|jogo|game|gioco|игры) ",
    )
)
#: A name run that ends where the text given to it ends / starts where it starts.
_RUN_AT_END = re.compile(_NAME_RUN + r"$")
_RUN_AT_START = re.compile(_NAME_RUN)
#: Characters before a name that starts a sentence or a clause.
_NAME_WINDOW = 60


def _run_before(text: str, end: int) -> tuple[str, int] | None:
    start = max(0, end - _NAME_WINDOW)
    m = _RUN_AT_END.search(text, start, end)
    return (m.group(1), m.start()) if m is not None else None


def _is_ticker(sym: str, *, bracketed: bool, dollar: bool = False) -> bool:
    up = sym.upper()
    # "$IP" is a ticker even though "IP" alone is not: the dollar sign says so.
    if (up in lexicon.NON_TICKERS and not dollar) or up.isdigit():
        return False
    if up in lexicon.QUOTE_ASSETS and not bracketed:
        return False
    return 2 <= len(up) <= 12


def extract_ticker(text: str, title_end: int, anchors: tuple[int, ...]) -> str | None:
    """The ticker of the project the text is about, upper case, or None.

    Args:
        text: Title and body.
        title_end: Offset where the headline ends (a mention there weighs more).
        anchors: Offsets of event cues (a mention near one weighs more).
    """
    score: dict[str, float] = {}
    for pattern, weight in _TICKER_PATTERNS:
        bracketed = weight >= 3.0
        for m in pattern.finditer(text):
            sym = m.group(1)
            # "$IP", "ZK/USDT": the context says ticker, whatever the stop-list says.
            explicit = m.group(0).startswith("$") or "/" in m.group(0)
            if not _is_ticker(sym, bracketed=bracketed, dollar=explicit):
                continue
            if not sym.isupper() and not (m.group(0).startswith("$") and len(sym) >= 3):
                continue
            up = sym.upper()
            w = weight
            if m.start() < title_end:
                w += 1.5
            if anchors and min(abs(m.start() - a) for a in anchors) < 160:
                w += 1.0
            if up in lexicon.QUOTE_ASSETS:
                w -= 2.5
            score[up] = score.get(up, 0.0) + w
    if not score:
        return None
    return max(score, key=lambda s: (score[s], -text.find(s)))


_MONTH_WORDS = re.compile(
    r"^(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|monday|tuesday|wednesday|thursday|"
    r"friday|saturday|sunday|on|in|at|this|today|tomorrow)", re.I
)


def _is_month(name: str) -> bool:
    return bool(_MONTH_WORDS.match(name)) and len(name.split()) == 1


def _clean_run(run: str) -> str | None:
    words = run.split()
    for i, w in enumerate(words):
        if w.endswith(("'s", "’s")):  # "Starknet's STRK": the possessive ends the name
            words = [*words[:i], w[:-2]]
            break
    while words and (
        words[0].lower().strip(":") in _FILLER
        or words[0].lower() in lexicon.EXCHANGES
        or _is_month(words[0])
        or words[0].isdigit()
    ):
        words.pop(0)
    while words and (words[-1].lower() in _FILLER or words[-1].lower() in lexicon.EXCHANGES):
        words.pop()
    if not words:
        return None
    name = " ".join(words).strip(" .,:;-'’\"")
    if not name or name.upper() in lexicon.NON_TICKERS or len(name) < 2:
        return None
    return name


def extract_project(text: str, ticker: str | None, anchors: tuple[int, ...]) -> str | None:
    """The project's name as written, or None.

    With a ticker, the name written next to it; otherwise the name next to a
    launch phrase nearest an event cue.
    """
    names: dict[str, float] = {}
    first: dict[str, int] = {}

    def add(name: str | None, at: int, weight: float) -> None:
        if name is None:
            return
        names[name] = names.get(name, 0.0) + weight
        first.setdefault(name, at)

    if ticker:
        t = re.escape(ticker)
        for suffix, weight in (
            (re.compile(rf"\s*\(\s*\$?{t}\s*\)"), 3.0),
            (re.compile(rf"(?:'s|’s)? \$?{t}\b"), 1.0),
        ):
            for m in suffix.finditer(text):
                got = _run_before(text, m.start())
                if got is not None:
                    add(_clean_run(got[0]), got[1], weight)
        after = re.compile(rf"\$?{t}\s*\(\s*{_NAME_RUN}\s*\)")
        for m in after.finditer(text):
            add(_clean_run(m.group(1)), m.start(), 3.0)

    def near(at: int) -> float:
        return 1.5 if anchors and min(abs(at - a) for a in anchors) < 200 else 0.75

    def keep(name: str | None) -> str | None:
        if name and (name.upper() == ticker or _is_month(name)):
            return None
        return name

    for suffix in _AFTER_NAME:
        for m in suffix.finditer(text):
            got = _run_before(text, m.start())
            if got is not None:
                add(keep(_clean_run(got[0])), got[1], near(got[1]))
    for prefix in _BEFORE_NAME:
        for m in prefix.finditer(text):
            run = _RUN_AT_START.match(text, m.end())
            if run is not None:
                add(keep(_clean_run(run.group(1))), m.end(), near(m.end()))
    best = max(names, key=lambda n: (names[n], -first[n])) if names else None
    if ticker and best is not None and best.upper() == ticker:
        others = [n for n in names if n.upper() != ticker]
        best = max(others, key=lambda n: (names[n], -first[n])) if others else None
    if best is None:
        best = _most_named(text, ticker)
    if ticker and (best is None or best.upper() == ticker):
        best = _named_like(text, ticker) or best
    return best or ticker


def _subsequence(ticker: str, name: str) -> bool:
    letters = iter(name.lower())
    return all(ch in letters for ch in ticker.lower())


def _named_like(text: str, ticker: str) -> str | None:
    """A proper name the ticker abbreviates ("Starknet" for STRK), the most mentioned."""
    counts: dict[str, int] = {}
    for m in _PROPER.finditer(text):
        name = _clean_run(m.group(1))
        if (
            name and name.upper() != ticker and name[0].lower() == ticker[0].lower()
            and _subsequence(ticker, name) and not _is_month(name)
            and name.lower() not in lexicon.EXCHANGES
        ):
            counts[name] = counts.get(name, 0) + 1
    return max(counts, key=lambda n: (counts[n], -len(n))) if counts else None


_PROPER = re.compile(r"(?<![\w$])([A-Z][a-z]+[A-Za-z]*(?: [A-Z][a-z]+[A-Za-z]*){0,2})")


def _most_named(text: str, ticker: str | None) -> str | None:
    """The proper name a text repeats most (not a venue, a month or the ticker)."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for m in _PROPER.finditer(text):
        name = _clean_run(m.group(1))
        if not name or _is_month(name) or (ticker and name.upper() == ticker):
            continue
        at = m.start()
        sentence_start = at == 0 or text[max(0, at - 2) : at].strip() in {".", "!", "?", ""}
        counts[name] = counts.get(name, 0) + (1 if not sentence_start else 0) + 1
        first.setdefault(name, at)
    if not counts:
        return None
    best = max(counts, key=lambda n: (counts[n], -first[n]))
    return best if counts[best] >= 3 else None


#: A byline or dateline: "Published on March 3, 2025", "Updated: ...", "Mar 3, 2025 |".
_BYLINE = re.compile(
    r"(?:published|updated|posted|last updated|pubblicato|aggiornato|publicado|atualizado|"
    r"publié|mis à jour|veröffentlicht|aktualisiert|by [A-Z][a-z]+ [A-Z][a-z]+)\s*(?:on|il|em|"
    r"le|el|am)?\s*[:\-–|]?\s*$",
    re.I,
)


#: Words just before a date that make it the event's: "trading begins: June 17".
_EVENT_BEFORE = re.compile(
    r"(?:trading|list(?:ing|s|ed)?|launch(?:es|ed)?|tge|token generation event|live|claim\w*|"
    r"distribut\w+|debut\w*|airdrop|quotazione|listagem|cotation|negociação|handel|торги|"
    r"lancio|lançamento|lancement|lanzamiento|start\w*|begins?|opens?)\b[^.\n]{0,40}$",
    re.I,
)
#: Words just before a date that make it another's: a campaign's end, a snapshot.
_OTHER_BEFORE = re.compile(
    r"(?:until|through|till|ends?|snapshot|subscription|deposits?|from|since|between|"
    r"announced|published|campaign|registration|whitelist|originally|previously|fino al|até|"
    r"jusqu'au|hasta|bis)\b[^.\n]{0,25}$",
    re.I,
)


def extract_date(
    text: str, published: dt.date | None, anchors: tuple[int, ...]
) -> DateMention | None:
    """The mention of the event date nearest an event cue, or None."""
    mentions = [m for m in find_dates(text, published) if not _is_byline(text, m)]
    if not mentions:
        return None

    def cost(m: DateMention) -> float:
        d = min((abs(m.start - a) for a in anchors), default=float(m.start))
        # A date after the cue ("TGE on March 3") reads more often as its date.
        if any(0 <= m.start - a < 120 for a in anchors):
            d *= 0.6
        before = text[max(0, m.start - 60) : m.start]
        if _EVENT_BEFORE.search(before):
            d -= 60
        if _OTHER_BEFORE.search(before[-35:]):
            d += 150
        return d - (25 if m.has_year else 0)

    return min(mentions, key=cost)


def _is_byline(text: str, m: DateMention) -> bool:
    before = text[max(0, m.start - 40) : m.start]
    if _BYLINE.search(before):
        return True
    # A dateline opens the text or a line: "March 3, 2025 — ..." or "3 Mar 2025 |".
    line_start = text.rfind("\n", 0, m.start) + 1
    after = text[m.end : m.end + 4]
    dateline = re.match(r"\s*[|—–\-·]", after) is not None
    return m.start - line_start <= 1 and m.has_year and dateline
