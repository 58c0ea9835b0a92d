"""Settings of the model layer: model, limits, prices and budgets.

Environment variables are read only at the CLI edge, which hands them to
:meth:`LlmSettings.from_env`; library code takes a settings object.

Example:
    >>> s = LlmSettings.from_env({"ANTHROPIC_API_KEY": "sk-ant-x", "SWARM_LLM_BUDGETS":
    ...                           "swarm:0.05usd/job,role:keyword_precision:20000tokens/day"})
    >>> s.enabled, s.model
    (True, 'claude-sonnet-4-5')
    >>> [(b.scope, b.unit, b.limit, b.per) for b in s.budgets]  # doctest: +NORMALIZE_WHITESPACE
    [('swarm', 'usd', 0.05, 'job'), ('role:keyword_precision', 'tokens', 20000.0, 'day')]
    >>> LlmSettings.from_env({}).enabled
    False
    >>> LlmSettings.from_dsn("https://sk-ant-x@api.anthropic.com?model=claude-haiku-4-5&rpm=50").rpm
    50
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl, unquote, urlsplit

from swarm.errors import ConfigError

__all__ = ["DEFAULT_PRICES", "Budget", "LlmSettings", "Price"]

MODES = ("auto", "online", "offline")


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens, by kind; batch requests cost ``batch`` times as much."""

    input: float
    output: float
    cache_write: float
    cache_read: float
    batch: float = 0.5


#: List prices (USD per million tokens) of the models the layer knows.
DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType({
    "claude-opus-4-1": Price(15.0, 75.0, 18.75, 1.50),
    "claude-sonnet-4-5": Price(3.0, 15.0, 3.75, 0.30),
    "claude-haiku-4-5": Price(1.0, 5.0, 1.25, 0.10),
})

_BUDGET = re.compile(
    r"^(?P<scope>swarm|task|role(?::[\w.-]+)?)"
    r":(?P<limit>\d+(?:\.\d+)?)(?P<unit>usd|tokens)/(?P<per>day|job)$"
)


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit.

    Attributes:
        scope: ``swarm``; ``role`` (each role its own) or ``role:<name>``; ``task``
            (each task its own).
        unit: ``usd`` or ``tokens`` (input + output + cache writes + cache reads).
        limit: The limit in that unit.
        per: ``day`` (UTC) or ``job`` (one run).
    """

    scope: str
    unit: str
    limit: float
    per: str = "day"

    def __post_init__(self) -> None:
        if self.unit not in ("usd", "tokens") or self.per not in ("day", "job"):
            raise ConfigError(f"budget {self}: unit must be usd|tokens and per day|job")
        if not (self.limit >= 0):
            raise ConfigError(f"budget limit must be >= 0, got {self.limit!r}")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``<scope>:<limit><usd|tokens>/<day|job>``, e.g. ``role:scout:0.5usd/day``."""
        m = _BUDGET.match(text.strip())
        if m is None:
            raise ConfigError(
                f"budget {text!r} must look like 'swarm:0.05usd/job' or "
                "'role:keyword_precision:20000tokens/day' (scopes: swarm, role, role:<name>, task)"
            )
        return cls(m["scope"], m["unit"], float(m["limit"]), m["per"])


@dataclass(frozen=True, slots=True, kw_only=True)
class LlmSettings:
    """What the model layer calls, how fast, and what it may spend.

    Attributes:
        api_key: Anthropic API key; ``None`` means offline.
        base_url: API base URL (``None``: the SDK's default).
        mode: ``auto`` (online when a key is set), ``online`` (a key is required) or
            ``offline`` (never call the model).
        model: Model id.
        max_tokens: Default ``max_tokens`` of a call.
        max_retries: Retries of the SDK (it honours ``retry-after``); nothing retries on top.
        timeout: Seconds per request.
        rpm / itpm / otpm: Requests, input tokens and output tokens per ``period`` and
            model, shared by the whole swarm (``None``: no limit).
        period: The limits' period in seconds (60; tests scale it down with the limits).
        tolerance: Burst the limiter allows, as a fraction of ``period``.
        prices: Model id -> :class:`Price`.
        budgets: Spending limits.
        job: Id of the current job, for ``per="job"`` budgets; ``None``: this process run
            (``SWARM_LLM_JOB`` names a job several processes share).
        prompt_cache: Mark the stable prefix (tools + system) with ``cache_control``.
    """

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    mode: str = "auto"
    model: str = "claude-sonnet-4-5"
    max_tokens: int = 1024
    max_retries: int = 2
    timeout: float = 60.0
    rpm: int | None = 50
    itpm: int | None = 30_000
    otpm: int | None = 8_000
    period: float = 60.0
    tolerance: float = 0.02
    prices: Mapping[str, Price] = field(default_factory=lambda: DEFAULT_PRICES)
    budgets: tuple[Budget, ...] = ()
    job: str | None = None
    prompt_cache: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--llm {self.mode!r} is not one of {', '.join(MODES)}")
        if self.mode == "online" and not self.api_key:
            raise ConfigError("--llm online needs ANTHROPIC_API_KEY")
        if self.model not in self.prices:
            raise ConfigError(
                f"no price for model {self.model!r}; known: {', '.join(sorted(self.prices))}"
            )
        for name in ("rpm", "itpm", "otpm"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive, got {value!r}")
        if self.period <= 0 or not (0 <= self.tolerance < 1):
            raise ConfigError("period must be > 0 and tolerance in [0, 1)")
        if self.max_retries < 0 or self.max_tokens < 1:
            raise ConfigError("max_retries must be >= 0 and max_tokens >= 1")

    @property
    def enabled(self) -> bool:
        """Whether model calls are made at all."""
        return self.mode != "offline" and bool(self.api_key)

    @property
    def offline_reason(self) -> str:
        """Why the layer is offline (empty when it is not)."""
        if self.mode == "offline":
            return "--llm offline"
        return "" if self.api_key else "no ANTHROPIC_API_KEY"

    def price(self, model: str) -> Price:
        """The price of ``model``; an unknown model is a configuration error."""
        try:
            return self.prices[model]
        except KeyError:
            raise ConfigError(f"no price for model {model!r}") from None

    def replace(self, **changes: object) -> LlmSettings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, mode: str | None = None) -> LlmSettings:
        """Read ``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``, ``SWARM_LLM`` (mode),
        ``SWARM_LLM_MODEL``, ``SWARM_LLM_RPM``/``ITPM``/``OTPM``, ``SWARM_LLM_PERIOD`` and
        ``SWARM_LLM_BUDGETS`` (comma-separated :meth:`Budget.parse` forms).

        Raises:
            ConfigError: A value is invalid.
        """
        get = environ.get
        return cls(
            api_key=get("ANTHROPIC_API_KEY") or None,
            base_url=get("ANTHROPIC_BASE_URL") or None,
            mode=(mode or get("SWARM_LLM") or "auto").lower(),
            model=get("SWARM_LLM_MODEL") or "claude-sonnet-4-5",
            rpm=_int("SWARM_LLM_RPM", get("SWARM_LLM_RPM"), 50),
            itpm=_int("SWARM_LLM_ITPM", get("SWARM_LLM_ITPM"), 30_000),
            otpm=_int("SWARM_LLM_OTPM", get("SWARM_LLM_OTPM"), 8_000),
            period=float(get("SWARM_LLM_PERIOD") or 60.0),
            budgets=tuple(
                Budget.parse(b) for b in (get("SWARM_LLM_BUDGETS") or "").split(",") if b.strip()
            ),
            job=get("SWARM_LLM_JOB") or None,
        )

    @classmethod
    def from_dsn(cls, dsn: str, **overrides: object) -> LlmSettings:
        """``https://<api-key>@host[:port]?model=&rpm=&itpm=&otpm=&period=&budgets=``.

        Raises:
            ConfigError: The DSN is malformed.
        """
        parts = urlsplit(dsn)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"LLM DSN {dsn!r} must look like https://<key>@api.anthropic.com")
        query = dict(parse_qsl(parts.query))
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        values: dict[str, object] = {
            "api_key": unquote(parts.username) if parts.username else None,
            "base_url": f"{parts.scheme}://{host}{parts.path.rstrip('/')}",
        }
        for name in ("rpm", "itpm", "otpm", "max_tokens", "max_retries"):
            if name in query:
                values[name] = _int(name, query[name], 0)
        for name in ("period", "tolerance", "timeout"):
            if name in query:
                values[name] = float(query[name])
        for name in ("model", "mode", "job"):
            if name in query:
                values[name] = query[name]
        if "budgets" in query:
            values["budgets"] = tuple(Budget.parse(b) for b in query["budgets"].split(","))
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _int(name: str, value: str | None, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    if value.lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer") from None
