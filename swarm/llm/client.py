"""The model layer: Claude through ``anthropic.AsyncAnthropic``, as ``ctx.llm``.

:class:`Llm` is built once per process from :class:`~swarm.llm.settings.LlmSettings`;
agents see an :class:`LlmScope` of it bound to their role, id and task, which
is what the accounting and the budgets are keyed on. Every call:

1. reserves its worst-case cost in the budgets (:mod:`swarm.llm.budget`), or
   fails with :class:`~swarm.llm.errors.BudgetExceeded` before anything is sent;
2. goes through the SDK, which retries (``max_retries``; it honours
   ``retry-after``). Each HTTP attempt passes the swarm-wide rate limiter in an
   SDK middleware (:class:`LimiterMiddleware`), which also turns a 429's
   ``retry-after`` and exhausted ``anthropic-ratelimit-*`` headers into a pause
   for the whole swarm. Nothing of ours retries on top of the SDK;
3. settles the budget, corrects the limiter's token estimate, and records the
   usage (per task, agent, role, swarm; ``/metrics``).

Offline (no key, or ``--llm offline``) every call raises
:class:`~swarm.llm.errors.LlmUnavailable`; call sites run their
deterministic path and say so once through :meth:`LlmScope.fallback`.

Example:
    >>> from swarm.llm.settings import LlmSettings

if TYPE_CHECKING:
    import anthropic
    >>> llm = Llm(LlmSettings())
    >>> scope = llm.scope(role="keyword_precision", agent="kp-1")
    >>> scope.available, llm.offline_reason
    (False, 'no ANTHROPIC_API_KEY')
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import structlog
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_result,
    stop_after_delay,
    wait_exponential,
)

from swarm import metrics
from swarm.errors import TransportError
from swarm.llm.accounting import Accountant, Usage
from swarm.llm.budget import Budgets, LocalBudgetStore, Reservation
from swarm.llm.errors import (
    BudgetExceeded,
    LlmError,
    LlmOutputInvalid,
    LlmOverloaded,
    LlmUnavailable,
    RateLimited,
    translate,
)
from swarm.llm.hygiene import UNTRUSTED_NOTE, Tool, ToolCall, allowed, validate
from swarm.llm.limiter import LocalRateLimiter, RateLimiter, Rates
from swarm.llm.settings import LlmSettings
from swarm.messages import new_id

if TYPE_CHECKING:
    import anthropic

__all__ = [
    "BatchItem", "Llm", "LlmScope", "Reply", "estimate_tokens", "gather_limited", "offline",
    "prefix_key",
]

T = TypeVar("T")
_log = structlog.get_logger("swarm.llm")
#: Characters per token assumed before the API has counted (deliberately low:
#: a budget reserves the worst case).
_CHARS_PER_TOKEN = 3.0
_CACHE = {"type": "ephemeral"}
#: Call sites that said they fell back: once per process, however many swarms it runs.
_SAID: set[str] = set()
#: Sent with every call: ties a call's retries together (logs, the limiter, the stub).
CALL_ID_HEADER = "x-swarm-call-id"


class Reply(msgspec.Struct, kw_only=True):
    """A model answer.

    Attributes:
        text: The text blocks, joined.
        tool_calls: Tool calls within the call's allow-list.
        refused: Names of tool calls outside it (refused, not run).
        usage: Tokens and cost.
        stop_reason: Why the model stopped.
        model: Model that answered.
    """

    text: str = ""
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)
    refused: list[str] = msgspec.field(default_factory=list)
    usage: Usage = msgspec.field(default_factory=Usage)
    stop_reason: str = ""
    model: str = ""


class BatchItem(msgspec.Struct, frozen=True):
    """One request of a Message Batch: its id and its messages (system and tools are shared)."""

    custom_id: str
    messages: list[dict[str, Any]]


def estimate_tokens(body: dict[str, Any]) -> int:
    """Input tokens of a request before the API counts them (over-estimates)."""
    size = sum(len(json.dumps(body.get(k), separators=(",", ":")))
               for k in ("system", "tools", "messages") if body.get(k))
    return math.ceil(size / _CHARS_PER_TOKEN)


def prefix_key(body: dict[str, Any]) -> str:
    raw = json.dumps([body.get("model"), body.get("system"), body.get("tools")], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()


class Llm:
    """The model layer of one process.

    Args:
        settings: Model, limits, prices, budgets.
        limiter: Shared rate limiter (default: in-process).
        budgets: Budget store (default: in-process counters).
        client: An ``AsyncAnthropic`` to use instead of building one (its own
            middleware is then the caller's business).
    """

    def __init__(
        self,
        settings: LlmSettings,
        *,
        limiter: RateLimiter | None = None,
        budgets: Budgets | None = None,
        client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        self.settings = settings
        self.limiter: RateLimiter = limiter or LocalRateLimiter(Rates.of(settings))
        self.budgets = budgets or Budgets(settings.budgets, LocalBudgetStore(), job=settings.job)
        self.accountant = Accountant()
        self._cached: dict[str, int] = {}
        # Tokens the API counts per estimated token (learned; the estimate runs high).
        self._ratio: dict[str, float] = {}
        # call id -> (input, output) the limiter holds for the call's answered attempt.
        self.held: dict[str, tuple[int, int]] = {}
        self.client: anthropic.AsyncAnthropic | None = client
        if client is None and settings.enabled:
            # Imported here: an offline swarm never pays for importing the SDK.
            import anthropic

            from swarm.llm.middleware import LimiterMiddleware

            self.client = anthropic.AsyncAnthropic(
                api_key=settings.api_key, base_url=settings.base_url,
                max_retries=settings.max_retries, timeout=settings.timeout,
                middleware=[LimiterMiddleware(self)],
            )

    @classmethod
    def build(cls, settings: LlmSettings, *, redis: Any = None, prefix: str = "swarm") -> Llm:
        """The model layer of a process: on a Redis swarm (``redis``: a ``redis.asyncio``
        client), limiter and budgets live in Redis, shared by every process."""
        if not settings.enabled or redis is None:
            return cls(settings)
        from swarm.llm.budget import RedisBudgetStore
        from swarm.llm.limiter import RedisRateLimiter

        return cls(
            settings, limiter=RedisRateLimiter(redis, Rates.of(settings), prefix=prefix),
            budgets=Budgets(settings.budgets, RedisBudgetStore(redis), job=settings.job,
                            prefix=prefix),
        )

    @property
    def available(self) -> bool:
        return self.client is not None

    @property
    def offline_reason(self) -> str:
        return self.settings.offline_reason if self.client is None else ""

    def scope(self, *, role: str, agent: str = "", task: str = "") -> LlmScope:
        """The view an agent (or one of its tasks) gets as ``ctx.llm``."""
        return LlmScope(self, role=role, agent=agent, task=task)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    # -- internals shared by the scopes ------------------------------------------------------

    def _uncached(self, body: dict[str, Any]) -> int:
        return max(1, estimate_tokens(body) - self._cached.get(prefix_key(body), 0))

    def limiter_estimate(self, body: dict[str, Any]) -> int:
        """Input tokens that will count against the limit (cache reads do not)."""
        ratio = self._ratio.get(body["model"], 1.0)
        return max(1, math.ceil(self._uncached(body) * ratio))

    def _learn(self, body: dict[str, Any], usage: Usage) -> None:
        key = prefix_key(body)
        if usage.cache_read_tokens and key not in self._cached:
            # The cached prefix, in estimate units, so the next estimate leaves it out.
            self._cached[key] = estimate_tokens({k: body.get(k) for k in ("system", "tools")})
        if key in self._cached or not (usage.cache_read_tokens or usage.cache_write_tokens):
            seen = (usage.input_tokens + usage.cache_write_tokens) / self._uncached(body)
            old = self._ratio.get(body["model"], 1.0)
            self._ratio[body["model"]] = min(1.0, 0.8 * old + 0.2 * seen * 1.05)

    def fallback_once(self, site: str, reason: str, log: Any) -> None:
        if site not in _SAID:
            _SAID.add(site)
            log.warning("llm_fallback", site=site, reason=reason,
                        detail="running the deterministic path instead of the model")


class LlmScope:
    """``ctx.llm``: the model layer bound to a role, an agent and possibly a task."""

    __slots__ = ("agent", "llm", "log", "role", "task")

    def __init__(self, llm: Llm, *, role: str, agent: str = "", task: str = "") -> None:
        self.llm = llm
        self.role = role
        self.agent = agent
        self.task = task
        self.log: Any = _log.bind(role=role, agent_id=agent)

    @property
    def available(self) -> bool:
        """Whether model calls are made (else every call raises LlmUnavailable)."""
        return self.llm.available

    @property
    def settings(self) -> LlmSettings:
        return self.llm.settings

    def for_task(self, task: str) -> LlmScope:
        """The same scope, accounted (and budgeted) to ``task`` too."""
        return LlmScope(self.llm, role=self.role, agent=self.agent, task=task)

    def usage(self, scope: str = "swarm") -> Usage:
        """What this process recorded for ``scope`` (``swarm``, ``role:x``, ``task:y``...)."""
        return self.llm.accountant.get(scope)

    def fallback(self, site: str, error: BaseException | str) -> None:
        """Record that ``site`` ran its deterministic path; logged once per site and process."""
        reason = type(error).__name__ if isinstance(error, BaseException) else error
        metrics.LLM_FALLBACKS.labels(site=site, reason=reason).inc()
        self.llm.accountant.note(role=self.role, agent=self.agent, task=self.task, fallbacks=1)
        detail = str(error) if isinstance(error, BaseException) else error
        self.llm.fallback_once(site, detail or reason, self.log)

    # -- requests ------------------------------------------------------------------------------

    def _body(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        system: str | None,
        tools: Sequence[Tool],
        allow_write: bool,
        tool_choice: dict[str, Any] | None,
        max_tokens: int | None,
        model: str | None,
        untrusted: bool,
    ) -> tuple[dict[str, Any], set[str]]:
        offered = allowed(tools, allow_write)
        dropped = [t.name for t in tools if t not in offered]
        if dropped:
            self.log.info("llm_write_tools_not_offered", tools=dropped)
        body: dict[str, Any] = {
            "model": model or self.llm.settings.model,
            "max_tokens": max_tokens or self.llm.settings.max_tokens,
            "messages": list(messages),
        }
        if offered:
            body["tools"] = [t.param() for t in offered]
        text = "\n\n".join(p for p in (system, UNTRUSTED_NOTE if untrusted else None) if p)
        cache = self.llm.settings.prompt_cache
        if text:
            # One breakpoint after the system prompt caches tools + system (the stable prefix).
            body["system"] = [{"type": "text", "text": text}]
            if cache:
                body["system"][0]["cache_control"] = _CACHE
        elif offered and cache:
            body["tools"][-1]["cache_control"] = _CACHE
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        return body, {t.name for t in offered}

    def _worst_case(self, body: dict[str, Any], *, batch: bool = False) -> tuple[float, float]:
        price = self.llm.settings.price(body["model"])
        est = estimate_tokens(body)
        usd = (est * max(price.input, price.cache_write) + body["max_tokens"] * price.output) / 1e6
        return usd * (price.batch if batch else 1.0), float(est + body["max_tokens"])

    async def _reserve(self, body: dict[str, Any], *, batch: bool = False) -> Reservation:
        if not self.llm.available:
            raise LlmUnavailable(f"the model layer is offline ({self.llm.offline_reason})")
        usd, tokens = self._worst_case(body, batch=batch)
        try:
            return await self.llm.budgets.reserve(role=self.role, task=self.task, usd=usd,
                                                  tokens=tokens)
        except BudgetExceeded:
            metrics.LLM_CALLS.labels(model=body["model"], role=self.role, outcome="budget").inc()
            self.llm.accountant.note(role=self.role, agent=self.agent, task=self.task,
                                     budget_exceeded=1)
            raise

    async def _finish(
        self, body: dict[str, Any], message: Any, offered: set[str], reservation: Reservation,
        *, batch: bool = False, call_id: str = "",
    ) -> Reply:
        model = body["model"]
        usage = Usage.from_api(self.llm.settings.price(model), message.usage, batch=batch)
        await self.llm.budgets.settle(reservation, usd=usage.cost_usd, tokens=usage.tokens)
        if not batch:
            held_in, held_out = self.llm.held.pop(call_id, (0, 0))
            counted = usage.input_tokens + usage.cache_write_tokens
            await self.llm.limiter.settle(model, counted - held_in, usage.output_tokens - held_out)
            self.llm._learn(body, usage)
        reply = Reply(usage=usage, stop_reason=message.stop_reason or "", model=model)
        texts = []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                if block.name in offered:
                    reply.tool_calls.append(ToolCall(block.id, block.name, dict(block.input)))
                else:
                    reply.refused.append(block.name)
                    metrics.LLM_TOOLS_REFUSED.labels(role=self.role, tool=block.name).inc()
                    self.log.warning("llm_tool_call_refused", tool=block.name,
                                     allowed=sorted(offered))
        reply.text = "".join(texts)
        usage.refused_tool_calls = len(reply.refused)
        self.llm.accountant.record(usage, model=model, role=self.role, agent=self.agent,
                                   task=self.task)
        metrics.LLM_CALLS.labels(model=model, role=self.role, outcome="ok").inc()
        return reply

    @contextlib.asynccontextmanager
    async def _settling(
        self, body: dict[str, Any], reservation: Reservation, call_id: str
    ) -> AsyncIterator[None]:
        """A failed or abandoned call gives its budget reservation back; the limiter's
        Redis failing fails the call as an LlmError, so call sites fall back."""
        try:
            yield
        except BaseException as exc:
            self.llm.held.pop(call_id, None)
            await self.llm.budgets.settle(reservation, usd=0.0, tokens=0.0)
            if isinstance(exc, LlmError | TransportError):
                outcome = "rate_limited" if isinstance(exc, RateLimited) else "failed"
                metrics.LLM_CALLS.labels(model=body["model"], role=self.role,
                                         outcome=outcome).inc()
            if isinstance(exc, TransportError) and not isinstance(exc, LlmError):
                raise LlmOverloaded(f"model call not made: {exc}") from exc
            raise

    async def create(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        system: str | None = None,
        tools: Sequence[Tool] = (),
        allow_write: bool = False,
        tool_choice: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        model: str | None = None,
        untrusted: bool = False,
    ) -> Reply:
        """One Messages API call.

        Args:
            messages: The conversation (``tool_result`` blocks included).
            system: The stable instructions (cached with the tools).
            tools: The call's allow-list.
            allow_write: Offer tools that are not read-only too.
            tool_choice: ``{"type": "auto" | "any" | "tool", ...}``.
            untrusted: The messages carry scraped documents: say so in the system prompt.

        Raises:
            LlmUnavailable, BudgetExceeded, RateLimited, LlmOverloaded, LlmRequestRejected.
        """
        body, offered = self._body(messages, system=system, tools=tools, allow_write=allow_write,
                                   tool_choice=tool_choice, max_tokens=max_tokens, model=model,
                                   untrusted=untrusted)
        reservation = await self._reserve(body)
        call_id = new_id()
        async with self._settling(body, reservation, call_id):
            with translate():
                message = await self.llm.client.messages.create(  # type: ignore[union-attr]
                    **body, extra_headers={CALL_ID_HEADER: call_id})
        return await self._finish(body, message, offered, reservation, call_id=call_id)

    async def structured(
        self,
        out_type: type[T],
        messages: Sequence[dict[str, Any]],
        *,
        system: str,
        name: str = "record_result",
        description: str = "Record the result.",
        max_tokens: int | None = None,
        untrusted: bool = True,
        model: str | None = None,
    ) -> tuple[T, Reply]:
        """Ask for output of ``out_type``: a forced tool whose schema is the type's.

        Raises:
            LlmOutputInvalid: The model's tool input does not fit ``out_type``.
        """
        tool = Tool.from_type(name, description, out_type)
        reply = await self.create(messages, system=system, tools=[tool], max_tokens=max_tokens,
                                  tool_choice={"type": "tool", "name": name},
                                  untrusted=untrusted, model=model)
        call = next((c for c in reply.tool_calls if c.name == name), None)
        if call is None:
            raise LlmOutputInvalid(f"the model did not call {name} (stop: {reply.stop_reason})")
        return validate(call.input, out_type), reply

    async def stream(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        untrusted: bool = False,
        model: str | None = None,
        done: list[Reply] | None = None,
    ) -> AsyncIterator[str]:
        """Stream the answer's text as it arrives; the final :class:`Reply` is appended to
        ``done`` when given.

        Raises:
            LlmUnavailable, BudgetExceeded, RateLimited, LlmOverloaded, LlmRequestRejected.
        """
        body, offered = self._body(messages, system=system, tools=(), allow_write=False,
                                   tool_choice=None, max_tokens=max_tokens, model=model,
                                   untrusted=untrusted)
        reservation = await self._reserve(body)
        call_id = new_id()
        async with self._settling(body, reservation, call_id):
            with translate():
                async with self.llm.client.messages.stream(  # type: ignore[union-attr]
                    **body, extra_headers={CALL_ID_HEADER: call_id}
                ) as stream:
                    async for text in stream.text_stream:
                        yield text
                    message = await stream.get_final_message()
        reply = await self._finish(body, message, offered, reservation, call_id=call_id)
        if done is not None:
            done.append(reply)

    async def batch(
        self,
        out_type: type[T],
        items: Sequence[BatchItem],
        *,
        system: str,
        name: str = "record_result",
        description: str = "Record the result.",
        max_tokens: int | None = None,
        timeout: float = 3600.0,
        poll: float = 1.0,
    ) -> dict[str, T]:
        """Structured output for many requests through the Message Batches API (half price).

        Requests that errored, expired or did not validate are left out of the
        result: their callers fall back for them.
        """
        tool = Tool.from_type(name, description, out_type)
        bodies = {
            item.custom_id: self._body(item.messages, system=system, tools=[tool],
                                       allow_write=False, max_tokens=max_tokens, model=None,
                                       tool_choice={"type": "tool", "name": name},
                                       untrusted=True)[0]
            for item in items
        }
        client = self.llm.client
        reservations: dict[str, Reservation] = {}
        out: dict[str, T] = {}
        try:
            # All or nothing: a batch that does not fit the budget is not sent.
            for cid, b in bodies.items():
                reservations[cid] = await self._reserve(b, batch=True)
            assert client is not None
            with translate():
                requests: Any = [{"custom_id": cid, "params": b} for cid, b in bodies.items()]
                created = await client.messages.batches.create(requests=requests)
                # Polling the batch is ours (the SDK does not wait for batches), so tenacity.
                polling = AsyncRetrying(
                    retry=retry_if_result(lambda b: b.processing_status != "ended"),
                    wait=wait_exponential(multiplier=poll, max=max(poll, 60.0)),
                    stop=stop_after_delay(timeout),
                )
                try:
                    await polling(client.messages.batches.retrieve, created.id)
                except RetryError:
                    await client.messages.batches.cancel(created.id)
                    raise LlmOverloaded(
                        f"message batch {created.id} did not end in {timeout:g} s; cancelled"
                    ) from None
                async for entry in await client.messages.batches.results(created.id):
                    cid = entry.custom_id
                    if entry.result.type != "succeeded":
                        await self.llm.budgets.settle(reservations.pop(cid), usd=0.0, tokens=0.0)
                        continue
                    reply = await self._finish(bodies[cid], entry.result.message, {name},
                                               reservations.pop(cid), batch=True)
                    call = next((c for c in reply.tool_calls if c.name == name), None)
                    if call is not None:
                        try:
                            out[cid] = validate(call.input, out_type)
                        except LlmOutputInvalid as exc:
                            self.log.warning("llm_batch_output_invalid", custom_id=cid,
                                             error=str(exc))
        finally:
            for reservation in reservations.values():
                await self.llm.budgets.settle(reservation, usd=0.0, tokens=0.0)
        return out


_OFFLINE: Llm | None = None


def offline() -> Llm:
    """The process's offline model layer (every call raises LlmUnavailable)."""
    global _OFFLINE
    if _OFFLINE is None:
        _OFFLINE = Llm(LlmSettings(mode="offline"))
    return _OFFLINE


async def gather_limited(n: int, *aws: Any) -> list[Any]:
    """Run awaitables at most ``n`` at a time (bulk callers)."""
    sem = asyncio.Semaphore(n)

    async def one(aw: Any) -> Any:
        async with sem:
            return await aw

    return await asyncio.gather(*(one(a) for a in aws))
