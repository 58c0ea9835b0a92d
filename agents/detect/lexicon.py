"""Multilingual cue vocabulary of the TGE detector.

Each cue is a named regular expression with a weight. Positive cues say "a
specific token is being generated, launched or listed at launch"; negative
cues say the text is about something else that uses the same words: a guide,
a rumour, a denial, a delay, a scam warning, a later listing of a token that
already trades, price talk, a retrospective, or "TGE" in a non-crypto sense.

The vocabulary covers English, Italian, Portuguese, French, Spanish and
German. Weights are deliberately coarse (1, 2, 3): they were set by reading
real announcements, not fitted to one data set.

Example:
    >>> from agents.detect.lexicon import POSITIVE
    >>> any(c.pattern.search("Binance Will List Lombard (BARD)") for c in POSITIVE)
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agents.detect._keys import literal_keys, trie_pattern

__all__ = [
    "CRYPTO_CONTEXT",
    "EXCHANGES",
    "NEGATIVE",
    "NON_TICKERS",
    "POSITIVE",
    "QUOTE_ASSETS",
    "Cue",
    "CueScanner",
]

_I = re.I | re.U


@dataclass(frozen=True, slots=True)
class Cue:
    """One named pattern and its weight (positive for launch, negative against)."""

    name: str
    pattern: re.Pattern[str]
    weight: float
    #: Event cues anchor the evidence span and the date nearest the event.
    event: bool = False
    #: Lower-case strings one of which any match contains (None: no cheap test).
    keys: tuple[str, ...] | None = field(default=None, compare=False)
    #: The model feature it counts for: a cue in another language shares its English twin's.
    feature: str = ""

    @property
    def concept(self) -> str:
        """Name of the model feature this cue counts for."""
        return self.feature or self.name

    def finditer(self, text: str, lowered: str) -> list[int]:
        """Offsets of the matches in ``text`` (``lowered`` is its lower-case form)."""
        if self.keys is not None and not any(k in lowered for k in self.keys):
            return []
        return [m.start() for m in self.pattern.finditer(text)]


def _cue(
    name: str,
    regex: str,
    weight: float,
    *,
    event: bool = False,
    flags: int = _I,
    keys: tuple[str, ...] | None = None,
    feature: str = "",
) -> Cue:
    return Cue(
        name, re.compile(regex, flags), weight, event, keys or literal_keys(regex, flags), feature
    )


#: "a TGE", "un launchpad", "eine Token Generation Event": the generic sense, in six languages.
_GENERIC = "|".join(
    f"{article} {noun}"
    for article in ("a", "an", "un", "una", "um", "uma", "une", "ein", "eine")
    for noun in ("token generation event", "tge", "launchpad", "launch pad",
                 "evento de geração de tokens", "evento di generazione", "événement de génération",
                 "evento de generación de tokens")
)


#: Launch vocabulary. ``event`` cues mark where the event is described.
POSITIVE: tuple[Cue, ...] = (
    # English
    _cue("token generation event", r"\btoken[- ]generation[- ]events?\b", 3.0, event=True),
    _cue("TGE", r"(?<![\w-])\$?TGEs?(?![\w-])", 2.5, event=True, flags=re.U, keys=("tge",)),
    _cue("launchpool", r"\blaunch ?pools?\b|\bmegadrop\b|\bhodler airdrops?\b", 3.0, event=True),
    _cue("launchpad", r"\blaunch ?pads?\b|\blaunchx\b|\bstartup\b(?= (?:sale|project))",
         1.5, event=True),
    _cue("will list", r"\bwill (?:list|add|support|launch)\b(?=[^.\n]{0,80}\([A-Z0-9$]{2,12}\))",
         2.5, event=True),
    _cue("new listing", r"\b(?:new|initial|spot) listing\b|\blisting announcement\b|"
         r"\bto list\b|\blists\b|\bwill be listed\b|\blisted on\b|\blisting on\b|"
         r"\blisting of\b|\blisting at launch\b|\bday[- ]one listing\b", 1.5, event=True),
    _cue("trading opens", r"\b(?:spot )?trading (?:opens|starts|begins|will (?:open|start|begin)|"
         r"goes live|is (?:now )?(?:open|live))\b|\bopen(?:s|ed)? (?:for )?trading\b|"
         r"\bdeposits? (?:opens?|are open|is open|will open)\b", 2.0, event=True,
         keys=("trading", "open", "deposit")),
    _cue("token launch", r"\btoken (?:launch|debut|release|unveil)(?:es|ed|s)?\b|"
         r"\blaunch(?:es|ed|ing)? (?:of )?(?:its|their|the|a) (?:native |governance |utility )?"
         r"(?:token|coin)\b|\blaunch(?:es|ed)? \$[A-Z]", 2.5, event=True),
    _cue("goes live", r"\b(?:is|goes|went|now|are) live\b|\bhas launched\b|\bofficially launch",
         1.5, event=True),
    _cue("claim live", r"\bclaim(?:ing|s)? (?:is |are )?(?:now )?(?:live|open)\b|"
         r"\bclaim (?:portal|page|window)\b|\bclaim (?:your|their) \$?[A-Z]", 2.0, event=True),
    _cue("launch scheduled", r"\b(?:launch|tge|listing|airdrop|distribution|claim)(?:es)? "
         r"(?:is |was |has been |will be )?(?:scheduled|set|slated|planned|confirmed|tomorrow|"
         r"today|next week|this week|imminent|live)\b", 2.0, event=True),
    _cue("airdrop", r"\bairdrops?\b|\baidrop\w*|\bairdrop\w+", 1.5),
    _cue("will launch", r"\b(?:will|to|set to|plans? to|is set to|prepares? (?:for|to)) "
         r"(?:launch|list|debut|hold (?:its|a|the) (?:tge|token generation)|release|airdrop|"
         r"distribute)\b|\blaunch(?:es|ing)? (?:on|this|next|tomorrow|today)\b|"
         r"\bannounced the (?:listing|launch|date|tge|airdrop)\b|\bdebut(?:ing|s)? (?:its|the)\b|"
         r"\brelease of (?:its|the) \$?\w+ token\b|\bpublic (?:token )?sale\b|"
         r"\bupcoming (?:tge|token generation|token launch|launch|listing)\b|"
         r"\b(?:tokens?|airdrop) (?:will be|are expected to be|to be) distributed\b|"
         r"\bgenesis event\b|\bdeposits? open\b|\bcall auction\b|\bfirst exchange to list\b",
         2.0, event=True),
    _cue("trading starts", r"\b(?:become|becomes|will be|be|is|are) "
         r"(?:tradable|tradeable|claimable)\b|"
         r"\bbe(?:gin|gins|gan|ginning) trading\b|\bstart(?:s|ed)? trading\b|"
         r"\bcan (?:now )?claim\b|\bclaimable\b|\bavailable for (?:spot )?trading\b|"
         r"\binto its spot trading\b|\bspot trading (?:pairs?|marketplace|lineup|launch)\b|"
         r"\bwill go live\b|\bnewly (?:issued|minted|launched)\b|\bfreshly minted\b|"
         r"\b(?:announced|unveiled|introduced) (?:a|its|the) (?:new |native |governance )?token\b|"
         r"\blaunched (?:a|its|the) (?:new |native |governance )?(?:\$?\w+ )?token\b",
         2.0, event=True),
    _cue("distribution", r"\b(?:will |to )?(?:distribute|allocate|airdrop)s? (?:\w+ ){0,3}"
         r"(?:million|billion|tokens?)\b|\bdistribution of (?:the )?\$?\w+ (?:tokens?)?|"
         r"\bairdrop (?:of|date|distribution|claim)|\bclaim process\b|\bdate for the\b",
         1.5, event=True),
    _cue("other languages: launch, trading, distribution",
         r"\bkündigte\b|\bangekündigt\b|\binanspruchnahme\b|\bverteilt\b|\bhandelbar\b|"
         r"\bfue lanzado\b|\bha sido lanzado\b|\bdistribución\b|\banunció la fecha\b|"
         r"\ba officialisé\b|\ba lancé\b|\bdate de distribution\b|\bdistribution\b|"
         r"\blancerà\b|\bdistribuire\b|\bsimbolo ticker\b|\blanciat[oa]\b|"
         r"\bcomeça a ser negociad[oa]\b|\bnegociad[oa]s?\b|\bcompra e venda\b|"
         r"\bestreia no mercado\b|\bdistribuição\b|распредел\w+|начнутся",
         2.0, event=True, feature="trading starts"),
    _cue("ru: листинг", r"листинг\w*|торги[^.]{0,40}начнутся|запуск\w* токен\w*|"
         r"раздач\w* токен\w*|аирдроп\w*|эйрдроп\w*", 2.5, event=True, feature="new listing"),
    _cue("genesis", r"\btoken genesis\b|\bgenesis (?:event|distribution)\b", 2.0, event=True),
    _cue("pre-market", r"\bpre-?market trading\b|\bpremarket\b", 1.0),
    _cue("circulating supply at launch", r"\b(?:initial|launch) circulating supply\b|"
         r"\bcirculating supply (?:at|upon) (?:tge|launch|listing)\b", 1.5),
    # Italian
    _cue("it: lancio del token", r"\blanci(?:o|a|ato|ano|erà) (?:del |il |l'|dei |ufficiale del )?"
         r"(?:suo |proprio )?(?:token|coin)\b|\bevento di generazione (?:del |dei )?token\b|"
         r"\bquotazione\b|\bquoterà\b|\bsarà quotato\b|\bva in diretta\b|\bè live\b|"
         r"\bnegoziazione (?:inizia|apre|partirà)\b|\bnuovo listing\b", 2.5, event=True,
         feature="token launch"),
    # Portuguese
    _cue("pt: lançamento do token", r"\blança(?:mento|rá|ou|m)? (?:do |o |seu |oficial do )?"
         r"(?:seu |próprio )?(?:token|moeda)\b|\bevento de geração de tokens?\b|\blistagem\b|"
         r"\blistará\b|\bvai listar\b|\bserá listad[oa]\b|\bnegociação (?:começa|abre|inicia)\b|"
         r"\bestá (?:ao vivo|disponível para negociação)\b", 2.5, event=True,
         feature="token launch"),
    # French
    _cue("fr: lancement du token", r"\blancement (?:du|de son|officiel du|de leur) "
         r"(?:token|jeton)\b|\blance (?:son|le|leur) (?:token|jeton)\b|"
         r"\bévénement de génération de (?:tokens?|jetons?)\b|\bcotation\b|\blistera\b|"
         r"\bsera listé\b|\blisting (?:du|de)\b|\bouverture des échanges\b|"
         r"\bnégociation (?:commence|ouvre)\b", 2.5, event=True, feature="token launch"),
    # Spanish
    _cue("es: lanzamiento del token", r"\blanzamiento (?:del|de su|oficial del) (?:token|moneda)\b|"
         r"\blanza(?:rá)? (?:su|el) token\b|\bevento de generación de tokens?\b|\blistará\b|"
         r"\bserá listad[oa]\b|\blistado (?:de|en)\b|\bcotizará\b|"
         r"\b(?:el )?trading (?:comienza|abre)\b", 2.5, event=True,
         keys=("lanza", "evento de generación", "listará", "será listad", "listado", "cotizará",
               "el trading", "trading"), feature="token launch"),
    # German
    _cue("de: Token-Launch", r"\btoken-?(?:launch|start|generierung(?:sereignis)?)\b|"
         r"\bbringt (?:seinen|den) token\b|\bwird (?:den token )?\w* ?listen\b|\blistet\b|"
         r"\bhandel (?:beginnt|startet)\b|\bnotierung\b", 2.5, event=True, feature="token launch"),
)

#: Cues against: each names why a text that uses launch words is no announcement.
NEGATIVE: tuple[Cue, ...] = (
    _cue("definition", r"(?:\btge|token generation event|\blaunch ?pad|\blaunch ?pool|\blisting"
         r"|generación de tokens|geração de tokens?|génération de tokens?|\bico|\bieo|\bido)"
         r"\)?,? (?:\(tge\) )?(?:is|are|refers? to|is defined as|means|marks|désigne|est|es|é|"
         r"è|ist|bezeichnet|consiste|se refiere)\b(?! (?:tomorrow|today|live|set|scheduled|"
         r"coming|happening|on|now|expected|confirmed|near|here|in|just|finally|officially|"
         r"planned|slated|domani|amanhã|demain|mañana|morgen|prévu|previsto|programad))"
         r"|\bis the (?:moment|time|day|process)\b|\bsimply put\b|\bin simple terms\b|"
         r"\bwird als \w+ bezeichnet\b", 4.0),
    _cue("generic sense", rf"\b(?:{_GENERIC})\b", 2.0),
    _cue("guide", r"\bhow to\b|\bwhat (?:is|are)\b|"
         r"\bguide\b|\bexplained\b|\bexplainer\b|\btutorial\b|\bstep[- ]by[- ]step\b|"
         r"\bbeginner'?s?\b|\bwhat are (?:tges|token generation)\b|\b(?:faq|glossary)\b|"
         r"\bcos'è\b|\bche cos'è\b|\bguida\b|\bo que é\b|\bguia\b|\bqu'est-ce qu\b|"
         r"\bqué es\b|\bwas ist\b|\bleitfaden\b|\banleitung\b|\bcomment\b(?= \w+ (?:un|le|les))",
         3.0),
    _cue("rumour", r"\brumou?rs?\b|\brumou?red\b|\bspeculat\w*\b|\bunconfirmed\b|\bleak(?:ed|s)?\b|"
         r"\bwhisper\w*|\bconsidering\b|\bexploring\b|\bcryptic\b|\breportedly\b|"
         r"\bcould launch\b|\bmight launch\b|\bmay launch\b|\bhints? at\b|"
         r"\bteas(?:es|ed|ing)\b|\bno official (?:date|announcement)\b|\bvoci\b|\bindiscrezion\w+|"
         r"\brumores?\b|\bboatos?\b|\brumeurs?\b|\bgerüchte?\b|\bspekulation\w*",
         2.5),
    _cue("denial", r"\bdeni(?:es|ed|al)\b|\bno plans?\b|"
         r"\bnot (?:launching|planning|have a token)\b|"
         r"\bno (?:token|tge|airdrop)\b|\bhas not announced\b|\bfalse (?:claims?|reports?)\b|"
         r"\bsmentisc\w*|\bnega\b|\bdesmente\b|\bdément\w*|\bdementi\w*|\bniega\b", 4.0),
    _cue("delay", r"\bpostpone[sd]?\b|\bdelay(?:s|ed)?\b|\bpushed back\b|\bresched\w+|"
         r"\bcancel+(?:s|ed|ation)?\b|\bcalled off\b|\bscrapped\b|\bsuspend(?:s|ed)\b|"
         r"\bhalt(?:s|ed)\b|\brinviat\w+|\bposticipat\w+|\bannullat\w+|\badiad\w+|\bcancelad\w+|"
         r"\breport(?:é|ée)\b|\bannulé\w*|\bpospuest\w+|\bverschoben\b|\babgesagt\b", 4.0),
    _cue("scam", r"\bscam\w*\b|\bphishing\b|\bfake\b|\bimpersonat\w+|\bbeware\b|\bfraud\w*\b|"
         r"\bdrainer\b|\bmalicious\b|\blegit\b|\bred flags?\b|\bdo not (?:click|connect)\b|"
         r"\bwarns?\b|\bwarning\b|"
         r"\btruffa\b|\bgolpe\b|\barnaque\b|\bestafa\b|\bbetrug\b", 4.0),
    _cue("later listing", r"\bperpetual\b|\bperps?\b|\bfutures\b|\bmargin\b|\bsimple earn\b|"
         r"\bconvert\b|\btrading bots?\b|\bcopy trading\b|\bloans?\b|\bauto-invest\b|"
         r"\bbuy crypto\b|\bleverage\b|\bcontract\b|\brelist\w*\b|\bdelist\w*\b|"
         r"\bseed tag removed\b|\bexpansion of\b|\baddition of (?:the )?\w+/\w+|"
         r"\bmonitoring tag\b|\bnew (?:trading )?pairs?\b|"
         r"\bnetwork upgrade\b|\bhard fork\b|\btoken swap\b|\bmigration\b|\bredenominat\w+",
         2.0),
    _cue("price talk", r"\bprice (?:prediction|analysis|action)\b|\bsurg(?:es|ed|ing)\b|"
         r"\bsoar(?:s|ed|ing)\b|\bplung(?:es|ed)\b|\bral+ies\b|\brallied\b|\btumbl\w+|"
         r"\bdump(?:s|ed)?\b|\bslump\w*|\bsell-off\b|\bmarket cap(?:italisation|italization)?\b|"
         r"\ball-time high\b|\bchart\b|\bbearish\b|\bbullish\b|\bwhales?\b", 1.0),
    _cue("price move", r"\b\d+(?:\.\d+)?% (?:gain|drop|rise|fall|jump|increase|decrease|up|down)\b",
         1.5),
    _cue("retrospective", r"\b(?:since|after|post|following) (?:its|the|their) (?:tge|token "
         r"generation event|token launch|listing|debut)\b|\bpost-tge\b|\bafter tge\b|"
         r"\b(?:months?|years?|weeks?) (?:after|since) (?:its|the)\b|\blast (?:year|month)'s\b|"
         r"\bin (?:20(?:1\d|2[0-3]))\b|\bsince 20\d\d\b|\bunlock(?:s|ed)?\b|\bvesting\b|"
         r"\banniversary\b|\brecap\b|\blooking back\b|\bpost-mortem\b", 1.5),
    _cue("past event", r"\b(?:occurred|took place|was listed|were listed|has seen|had seen|"
         r"rose|fell|dropped|climbed|jumped|crashed|opening price|at launch,|launched in "
         r"(?:january|february|march|april|may|june|july|august|september|october|november|"
         r"december|20\d\d|late|early|the (?:end|start|beginning))|lancé en|lanciato nel|"
         r"lançado em|lanzado en|gestartet im|marked|went on to|has since|at the time,)\b", 3.5),
    _cue("controversy", r"\baccus\w+|\bbacklash\b|\bcriticism\b|\bcontrovers\w+|"
         r"\bpump-and-dump\b|\bconcerns? (?:over|about)\b|\blook back\b|\ba day after\b|"
         r"\bprice (?:drop|depreciation|decline)\b|\bcalo del\b|\blast year'?s\b|"
         r"\bcurrently stands\b|\bwas (?:the|a|one of the) (?:major |largest )?\w+ "
         r"(?:distribution|event|airdrop)\b|\bexecuted\b", 2.5),
    _cue("opinion", r"\bshould you\b|\bis it worth\b|\bwhy i\b|\bmy thoughts\b|\bopinion\b|"
         r"\banyone (?:know|else)\b|\bwhen (?:is|will) (?:the )?(?:tge|token)\b|\bwen\b|"
         r"\bpredictions?\b|\bthoughts\?", 2.0),
    _cue("eligibility checker", r"\b(?:eligibility|airdrop) checker\b|\bcheck (?:your|if you)\b",
         1.0),
    _cue("points / testnet", r"\bpoints? (?:program|campaign|season)\b|\btestnet\b|\bquests?\b|"
         r"\bfarming guide\b|\bpotential airdrop\b|\bretroactive\b|\bpossible airdrop\b",
         1.5),
)

#: Words that make a text about crypto at all; "TGE" without any is another TGE.
CRYPTO_CONTEXT = re.compile(
    r"\btokens?\b|\bcrypto\w*|\bblockchain\b|\bairdrops?\b|\bwallets?\b|\bweb3\b|\bdefi\b|"
    r"\bstak(?:e|ing)\b|\bexchange\b|\bmainnet\b|\bprotocol\b|\bchain\b|\busdt\b|\bbnb\b|"
    r"\bbinance\b|\bbybit\b|\bokx\b|\bcoinbase\b|\bkucoin\b|\bbitget\b|\bmexc\b|\bgate\.io\b|"
    r"\bjetons?\b|\bmoedas?\b|\bcriptovalut\w+|\bcripto\w*|\bkrypto\w*|\bdex\b|\$[A-Z]{2,}",
    _I,
)

#: Upper-case words that are not tickers (sorted for reading).
NON_TICKERS = frozenset("""
A AI AIR AM AMA AML AMM API APR APY ATH ATL AUM AVS BETA BTCFI BUIDL CEO CEST CET CEX CFO CMC CTO
DAO DAPP DAPPS DAU DEFI DEPIN DEX DM DYOR ECB EDT EOD EST ET ETF EU EVM FAQ FAQS FDV FOMO GAMEFI GMT
HK HKT ICO ICOS IDO IDOS IEO IMO IP IPO JST KOL KST KYC L1 L2 L3 LLC LP LPS LST LTD MEV MICA NEW
NFT NFTS NOW OTC P2P PDT PM PR PST Q1 Q2 Q3 Q4 RPC RWA SDK SEC SFT SGT SOLFI TBA TBD TGE TGES TL
TLDR TVL TX UI UK UN US USA UTC UX VC VCS VIP WEB3 XP ZK ZKP HODL HODLER ALPHA SEED TOKEN TOKENS
LIVE NEWS UPDATE BREAKING OFFICIAL IMPORTANT NOTICE CEXS DEXS POS POW GPU CPU NOTE ANN WL IRL
ROI UPD WTF GM GN LFG CEO CTA OG CLAIM ID SPOT PERP USDⓈ
""".split())

#: Assets quoted against or staked for a new token; a ticker only when nothing else is.
QUOTE_ASSETS = frozenset(
    "USDT USDC FDUSD USD1 BUSD DAI TUSD TRY EUR BRL BTC ETH BNB SOL USD".split()
)

#: Exchanges and venues: the place of a listing, not the project listed.
EXCHANGES = frozenset(
    """binance bybit okx coinbase kraken kucoin bitget mexc gate gate.io htx huobi upbit bithumb
    crypto.com bitfinex bitstamp gemini bitmart lbank poloniex bingx phemex weex coinex whitebit
    bitvavo bitpanda robinhood""".split()
)


class CueScanner:
    """Finds the cues of a list in a text with one pass over it.

    One trie-shaped expression of every cue's literal keys finds where a cue
    could start; only there is the cue's own pattern tried. Cues without keys
    are scanned in full. The result equals scanning each cue in full (tested).
    """

    def __init__(self, cues: tuple[Cue, ...]) -> None:
        self.cues = cues
        self.full = tuple(c for c in cues if c.keys is None)
        by_key: dict[str, list[Cue]] = {}
        for c in cues:
            for k in c.keys or ():
                by_key.setdefault(k, []).append(c)
        # A key found at a position implies each shorter key that is its prefix.
        self.by_key = {
            k: tuple(dict.fromkeys(c for p, cs in by_key.items() if k.startswith(p) for c in cs))
            for k in by_key
        }
        self.master = re.compile(trie_pattern(list(by_key)))

    def scan(self, text: str, lowered: str) -> dict[str, list[int]]:
        """Cue name -> offsets of its matches in ``text``, for the cues found."""
        hits: dict[str, list[int]] = {}
        if len(lowered) != len(text):  # lower() changed offsets: scan the slow way
            for c in self.cues:
                found = [m.start() for m in c.pattern.finditer(text)]
                if found:
                    hits[c.name] = found
            return hits
        search = self.master.search
        until: dict[str, int] = {}  # like finditer: a cue's matches do not overlap
        m = search(lowered)
        while m is not None:
            at = m.start()
            for c in self.by_key[m.group()]:
                if at < until.get(c.name, 0):
                    continue
                got = c.pattern.match(text, at)
                if got is not None:
                    hits.setdefault(c.name, []).append(at)
                    until[c.name] = max(got.end(), at + 1)
            m = search(lowered, at + 1)
        for c in self.full:
            found = [m.start() for m in c.pattern.finditer(text)]
            if found:
                hits[c.name] = found
        return hits
