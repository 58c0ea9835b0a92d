"""A local server that speaks the Anthropic Messages API, for tests and benches.

The real ``anthropic`` SDK is pointed at it (``AsyncAnthropic(base_url=stub.url)``)
and runs unmodified. What it implements, as the API documents it:

* ``POST /v1/messages``: content blocks (text, tool_use, tool_result, document),
  system as a string or blocks, tools and ``tool_choice``; ``usage`` with
  ``cache_creation_input_tokens`` and ``cache_read_input_tokens``, computed from
  the ``cache_control`` breakpoints of earlier requests (tools, then system,
  then messages; at most 4 breakpoints; prefixes under ``min_cache_tokens``
  are not cached; entries live 5 minutes);
* streaming: ``message_start``, ``content_block_start``, ``ping``,
  ``content_block_delta`` (``text_delta``, ``input_json_delta``),
  ``content_block_stop``, ``message_delta``, ``message_stop`` as SSE;
* per-model token-bucket rate limits (requests, input tokens and output tokens
  per period), answered with 429 ``rate_limit_error`` and ``retry-after``; every
  response carries the ``anthropic-ratelimit-*`` headers; injected 429 and 529
  ``overloaded_error`` faults;
* the Message Batches endpoints: create, retrieve, list, cancel and the JSONL
  results;
* accounting: every request is logged (:class:`Seen`) for the tests to read.

What the model answers is decided by a *responder* (``stub.responder = fn``):
``fn(request_json) -> list of content blocks``. The default one answers text,
or, when ``tool_choice`` forces a tool, a minimal input valid for its schema.
Tokens are counted deterministically (words and punctuation marks).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

__all__ = ["AnthropicStub", "Seen", "count_tokens"]

Responder = Callable[[dict[str, Any]], list[dict[str, Any]]]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_CACHE_TTL = 300.0
_MAX_BREAKPOINTS = 4


def count_tokens(value: Any) -> int:
    """The stub's tokenizer: words and punctuation marks of the JSON-free text."""
    if isinstance(value, str):
        return len(_TOKEN.findall(value))
    return len(_TOKEN.findall(json.dumps(value, sort_keys=True)))


@dataclass
class Seen:
    """One request as the stub saw it."""

    at: float
    path: str
    model: str
    status: int
    retry_count: int
    call_id: str
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    retry_after: float = 0.0
    injected: bool = False
    tools_offered: tuple[str, ...] = ()
    tool_calls: tuple[str, ...] = ()
    request: dict[str, Any] = field(default_factory=dict)
    answered_at: float = 0.0


class _Bucket:
    """The API's token bucket: capacity ``limit``, refilled continuously over ``period``."""

    def __init__(self, limit: float, period: float) -> None:
        self.limit = limit
        self.rate = limit / period
        self.level = limit
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.limit, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        self._refill()
        need = min(amount, self.limit) - self.level
        return max(0.0, need / self.rate)

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def reset_in(self) -> float:
        self._refill()
        return (self.limit - self.level) / self.rate


@dataclass
class Limits:
    """Per-model limits of the stub (``None``: unlimited)."""

    requests: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    period: float = 60.0


class AnthropicStub:
    """The stub server. Use as ``async with AnthropicStub() as stub: ...``.

    Args:
        models: Model ids the stub knows (others get 404 ``not_found_error``).
        limits: Rate limits applied to every model.
        min_cache_tokens: Shortest prefix that is cached.
        batch_delay: Seconds a batch stays ``in_progress`` before it is processed.
    """

    def __init__(
        self,
        *,
        models: tuple[str, ...] = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"),
        limits: Limits | None = None,
        min_cache_tokens: int = 1024,
        batch_delay: float = 0.0,
        api_key: str = "sk-ant-test",
    ) -> None:
        self.models = models
        self.limits = limits or Limits()
        self.min_cache_tokens = min_cache_tokens
        self.batch_delay = batch_delay
        self.api_key = api_key
        self.responder: Responder = default_responder
        self.seen: list[Seen] = []
        #: Faults to inject: each request to /v1/messages pops the next one, if any
        #: (``None`` means answer normally). Entries: ``(status, retry_after)``.
        self.faults: list[tuple[int, float] | None] = []
        #: Inject ``(status, retry_after)`` into every n-th first attempt.
        self.fail_every: tuple[int, int, float] | None = None
        self._first_attempts = 0
        self._cache: dict[tuple[str, str], float] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._batch_results: dict[str, list[dict[str, Any]]] = {}
        self._batch_tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.stream_chunk = 12

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count)
        app.router.add_post("/v1/messages/batches", self._batch_create)
        app.router.add_get("/v1/messages/batches", self._batch_list)
        app.router.add_get("/v1/messages/batches/{id}", self._batch_get)
        app.router.add_post("/v1/messages/batches/{id}/cancel", self._batch_cancel)
        app.router.add_get("/v1/messages/batches/{id}/results", self._batch_results_get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        for task in list(self._batch_tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> AnthropicStub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- accounting helpers for tests ------------------------------------------------------

    def ok(self, path: str = "/v1/messages") -> list[Seen]:
        """Requests answered with 200 on ``path``."""
        return [s for s in self.seen if s.status == 200 and s.path == path]

    def totals(self) -> dict[str, int]:
        """Summed usage over every answered request."""
        out = {"requests": 0, "input_tokens": 0, "output_tokens": 0,
               "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        for s in self.ok():
            out["requests"] += 1
            out["input_tokens"] += s.input_tokens
            out["output_tokens"] += s.output_tokens
            out["cache_creation_input_tokens"] += s.cache_creation_input_tokens
            out["cache_read_input_tokens"] += s.cache_read_input_tokens
        return out

    # -- errors ----------------------------------------------------------------------------

    @staticmethod
    def _error(
        status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        body = {"type": "error", "error": {"type": kind, "message": message},
                "request_id": _id("req")}
        hdrs = {"request-id": body["request_id"], **(headers or {})}
        return web.json_response(body, status=status, headers=hdrs)

    def _auth(self, request: web.Request) -> web.Response | None:
        # Older SDKs send ``x-api-key``, newer ones ``Authorization: Bearer``.
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key not in (request.headers.get("x-api-key"), bearer):
            return self._error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self._error(400, "invalid_request_error", "anthropic-version header is required")
        return None

    # -- /v1/messages ----------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        denied = self._auth(request)
        if denied is not None:
            return denied
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self._error(400, "invalid_request_error", "body is not JSON")
        seen = Seen(
            at=received, path="/v1/messages", model=str(body.get("model", "")), status=0,
            retry_count=int(request.headers.get("x-stainless-retry-count", "0")),
            call_id=request.headers.get("x-swarm-call-id", ""), stream=bool(body.get("stream")),
            tools_offered=tuple(t.get("name", "") for t in body.get("tools") or ()), request=body,
        )
        self.seen.append(seen)
        problem = self._validate(body)
        if problem is not None:
            seen.status = 400 if problem[0] == "invalid_request_error" else 404
            return self._error(seen.status, *problem)
        fault = self._fault(seen)
        if fault is not None:
            return fault
        model = body["model"]
        _, breakpoints, total = self._prefixes(body)
        read, write = self._cache_use(model, breakpoints, commit=False)
        limited = self._limit(model, total - read, int(body["max_tokens"]), seen)
        if limited is not None:
            return limited
        read, write = self._cache_use(model, breakpoints)
        blocks = self.responder(body)
        output = sum(count_tokens(b.get("text", "")) if b["type"] == "text"
                     else count_tokens(b.get("input", {})) for b in blocks)
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        if output > int(body["max_tokens"]):
            output, stop_reason = int(body["max_tokens"]), "max_tokens"
        usage = {"input_tokens": total - read - write, "output_tokens": output,
                 "cache_creation_input_tokens": write, "cache_read_input_tokens": read,
                 "service_tier": "standard"}
        seen.input_tokens, seen.output_tokens = usage["input_tokens"], output
        seen.cache_creation_input_tokens, seen.cache_read_input_tokens = write, read
        seen.tool_calls = tuple(b["name"] for b in blocks if b["type"] == "tool_use")
        self._take(model, usage, seen)
        message = {"id": _id("msg"), "type": "message", "role": "assistant", "model": model,
                   "content": blocks, "stop_reason": stop_reason, "stop_sequence": None,
                   "usage": usage}
        headers = {"request-id": _id("req"), **self._limit_headers(model)}
        seen.status = 200
        seen.answered_at = time.monotonic()
        if not body.get("stream"):
            return web.json_response(message, headers=headers)
        return await self._stream(request, message, headers)

    def _validate(self, body: dict[str, Any]) -> tuple[str, str] | None:
        if not isinstance(body.get("model"), str):
            return ("invalid_request_error", "model: Field required")
        if body["model"] not in self.models:
            return ("not_found_error", f"model: {body['model']}")
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            return ("invalid_request_error", "max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return ("invalid_request_error", "messages: at least one message is required")
        if messages[0].get("role") != "user":
            return ("invalid_request_error", "messages: first message must use the user role")
        tool_ids: set[str] = set()
        for i, m in enumerate(messages):
            if m.get("role") not in ("user", "assistant"):
                return ("invalid_request_error", f"messages.{i}.role: must be user or assistant")
            content = m.get("content")
            if isinstance(content, str):
                continue
            if not isinstance(content, list):
                return ("invalid_request_error", f"messages.{i}.content: Input should be a list")
            for b in content:
                kind = b.get("type")
                if kind == "tool_use":
                    tool_ids.add(b.get("id", ""))
                elif kind == "tool_result" and b.get("tool_use_id") not in tool_ids:
                    return ("invalid_request_error",
                            f"messages.{i}: tool_result block(s) with unknown tool_use_id")
                elif kind == "document":
                    src = b.get("source", {})
                    if src.get("type") != "text" or not isinstance(src.get("data"), str):
                        return ("invalid_request_error",
                                f"messages.{i}: document source must be text with data")
        names = [t.get("name") for t in body.get("tools") or ()]
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "tool" and choice.get("name") not in names:
            return ("invalid_request_error", f"tool_choice: tool {choice.get('name')!r} not found")
        if sum(1 for _ in _cache_points(body)) > _MAX_BREAKPOINTS:
            return ("invalid_request_error",
                    "A maximum of 4 blocks with cache_control may be provided.")
        return None

    def _fault(self, seen: Seen) -> web.Response | None:
        fault = self.faults.pop(0) if self.faults else None
        if fault is None and self.fail_every is not None and seen.retry_count == 0:
            self._first_attempts += 1
            every, status, after = self.fail_every
            if self._first_attempts % every == 0:
                fault = (status, after)
        if fault is None:
            return None
        status, after = fault
        seen.status, seen.retry_after, seen.injected = status, after, True
        seen.answered_at = time.monotonic()
        if status == 529:
            return self._error(529, "overloaded_error", "Overloaded")
        headers = {"retry-after": _seconds(after), **self._limit_headers(seen.model)}
        return self._error(status, "rate_limit_error", "injected rate limit", headers)

    # -- rate limits ------------------------------------------------------------------------

    def _bucket(self, model: str, kind: str) -> _Bucket | None:
        limit = {"requests": self.limits.requests, "input-tokens": self.limits.input_tokens,
                 "output-tokens": self.limits.output_tokens}[kind]
        if limit is None:
            return None
        key = (model, kind)
        if key not in self._buckets:
            self._buckets[key] = _Bucket(limit, self.limits.period)
        return self._buckets[key]

    def _limit(
        self, model: str, input_tokens: int, max_tokens: int, seen: Seen
    ) -> web.Response | None:
        waits = []
        for kind, amount in (("requests", 1), ("input-tokens", input_tokens),
                             ("output-tokens", min(max_tokens, 1))):
            bucket = self._bucket(model, kind)
            if bucket is not None:
                waits.append((bucket.wait_for(amount), kind))
        wait, kind = max(waits, default=(0.0, ""))
        if wait <= 0:
            return None
        seen.status, seen.retry_after = 429, wait
        seen.answered_at = time.monotonic()
        headers = {"retry-after": _seconds(wait), **self._limit_headers(model)}
        return self._error(429, "rate_limit_error",
                           f"This request would exceed the rate limit on {kind} per period",
                           headers)

    def _take(self, model: str, usage: dict[str, Any], seen: Seen) -> None:
        # Cache reads do not count towards the input-token limit (as on current models).
        for kind, amount in (("requests", 1),
                             ("input-tokens", usage["input_tokens"]
                              + usage["cache_creation_input_tokens"]),
                             ("output-tokens", usage["output_tokens"])):
            bucket = self._bucket(model, kind)
            if bucket is not None:
                bucket.take(amount)

    def _limit_headers(self, model: str) -> dict[str, str]:
        out: dict[str, str] = {}
        now = datetime.now(UTC)
        for kind in ("requests", "input-tokens", "output-tokens"):
            bucket = self._bucket(model, kind)
            if bucket is None:
                continue
            reset = now + timedelta(seconds=bucket.reset_in())
            out[f"anthropic-ratelimit-{kind}-limit"] = str(int(bucket.limit))
            out[f"anthropic-ratelimit-{kind}-remaining"] = str(max(0, int(bucket.level)))
            out[f"anthropic-ratelimit-{kind}-reset"] = reset.isoformat().replace("+00:00", "Z")
        return out

    # -- prompt caching ----------------------------------------------------------------------

    def _prefixes(self, body: dict[str, Any]) -> tuple[int, list[tuple[str, int]], int]:
        """Token count of the whole prompt and ``(hash, tokens)`` of each cached prefix."""
        hasher = hashlib.sha256()
        tokens = 0
        points: list[tuple[str, int]] = []
        for part, marked in _parts(body):
            hasher.update(json.dumps(_strip_cache(part), sort_keys=True).encode())
            tokens += count_tokens(_text_of(part))
            if marked:
                points.append((hasher.copy().hexdigest(), tokens))
        return tokens, points, tokens

    def _cache_use(
        self, model: str, points: list[tuple[str, int]], *, commit: bool = True
    ) -> tuple[int, int]:
        now = time.monotonic()
        self._cache = {k: v for k, v in self._cache.items() if v > now}
        read = 0
        for digest, tokens in points:
            if (model, digest) in self._cache and tokens >= self.min_cache_tokens:
                read = tokens
        longest = max((t for _, t in points if t >= self.min_cache_tokens), default=0)
        write = max(0, longest - read)
        if not commit:
            return read, write
        for digest, tokens in points:
            if tokens >= self.min_cache_tokens:
                self._cache[(model, digest)] = now + _CACHE_TTL
        return read, write

    # -- streaming ---------------------------------------------------------------------------

    async def _stream(
        self, request: web.Request, message: dict[str, Any], headers: dict[str, str]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers}
        )
        await resp.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**usage, "output_tokens": 1}}
        await send("message_start", {"type": "message_start", "message": start})
        await send("ping", {"type": "ping"})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                await send("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}})
                text = block["text"]
                for i in range(0, len(text), self.stream_chunk):
                    await send("content_block_delta", {
                        "type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": text[i:i + self.stream_chunk]}})
            else:
                head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                await send("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": head})
                raw = json.dumps(block["input"])
                for i in range(0, len(raw), self.stream_chunk):
                    await send("content_block_delta", {
                        "type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta",
                                  "partial_json": raw[i:i + self.stream_chunk]}})
            await send("content_block_stop", {"type": "content_block_stop", "index": index})
        await send("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]}})
        await send("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp

    async def _count(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        body = await request.json()
        _, _, total = self._prefixes(body)
        return web.json_response({"input_tokens": total})

    # -- batches -----------------------------------------------------------------------------

    async def _batch_create(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        body = await request.json()
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return self._error(400, "invalid_request_error", "requests: at least one is required")
        ids = [r.get("custom_id") for r in requests]
        if len(set(ids)) != len(ids):
            return self._error(400, "invalid_request_error", "custom_id values must be unique")
        for r in requests:
            problem = self._validate(r.get("params") or {})
            if problem is not None:
                return self._error(400, problem[0], f"requests[{r.get('custom_id')}]: {problem[1]}")
        now = datetime.now(UTC)
        batch_id = _id("msgbatch")
        batch = {
            "id": batch_id, "type": "message_batch", "processing_status": "in_progress",
            "request_counts": {"processing": len(requests), "succeeded": 0, "errored": 0,
                               "canceled": 0, "expired": 0},
            "ended_at": None, "created_at": _iso(now), "expires_at": _iso(now + timedelta(days=1)),
            "archived_at": None, "cancel_initiated_at": None, "results_url": None,
        }
        self._batches[batch_id] = batch
        self.seen.append(Seen(at=time.monotonic(), path="/v1/messages/batches", model="",
                              status=200, retry_count=0, call_id="", request=body))
        task = asyncio.create_task(self._run_batch(batch_id, requests))
        self._batch_tasks.add(task)
        task.add_done_callback(self._batch_tasks.discard)
        return web.json_response(batch)

    async def _run_batch(self, batch_id: str, requests: list[dict[str, Any]]) -> None:
        await asyncio.sleep(self.batch_delay)
        batch = self._batches[batch_id]
        results: list[dict[str, Any]] = []
        counts = batch["request_counts"]
        for r in requests:
            if batch["processing_status"] == "canceling":
                results.append({"custom_id": r["custom_id"], "result": {"type": "canceled"}})
                counts["canceled"] += 1
            else:
                params = r["params"]
                _, points, total = self._prefixes(params)
                read, write = self._cache_use(params["model"], points)
                blocks = self.responder(params)
                output = sum(count_tokens(b.get("text", "")) if b["type"] == "text"
                             else count_tokens(b.get("input", {})) for b in blocks)
                stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
                usage = {"input_tokens": total - read - write, "output_tokens": output,
                         "cache_creation_input_tokens": write, "cache_read_input_tokens": read,
                         "service_tier": "batch"}
                self.seen.append(Seen(
                    at=time.monotonic(), path="batch", model=params["model"], status=200,
                    retry_count=0, call_id=r["custom_id"], input_tokens=usage["input_tokens"],
                    output_tokens=output, cache_creation_input_tokens=write,
                    cache_read_input_tokens=read, request=params))
                message = {"id": _id("msg"), "type": "message", "role": "assistant",
                           "model": params["model"], "content": blocks, "stop_reason": stop,
                           "stop_sequence": None, "usage": usage}
                results.append({"custom_id": r["custom_id"],
                                "result": {"type": "succeeded", "message": message}})
                counts["succeeded"] += 1
            counts["processing"] -= 1
        self._batch_results[batch_id] = results
        batch["processing_status"] = "ended"
        batch["ended_at"] = _iso(datetime.now(UTC))
        batch["results_url"] = f"{self.url}/v1/messages/batches/{batch_id}/results"

    def _find_batch(self, request: web.Request) -> dict[str, Any] | web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        batch = self._batches.get(request.match_info["id"])
        if batch is None:
            missing = request.match_info["id"]
            return self._error(404, "not_found_error", f"batch {missing} not found")
        return batch

    async def _batch_get(self, request: web.Request) -> web.Response:
        batch = self._find_batch(request)
        return batch if isinstance(batch, web.Response) else web.json_response(batch)

    async def _batch_list(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        data = list(reversed(self._batches.values()))
        return web.json_response({"data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})

    async def _batch_cancel(self, request: web.Request) -> web.Response:
        batch = self._find_batch(request)
        if isinstance(batch, web.Response):
            return batch
        if batch["processing_status"] == "in_progress":
            batch["processing_status"] = "canceling"
            batch["cancel_initiated_at"] = _iso(datetime.now(UTC))
        return web.json_response(batch)

    async def _batch_results_get(self, request: web.Request) -> web.Response:
        batch = self._find_batch(request)
        if isinstance(batch, web.Response):
            return batch
        if batch["processing_status"] != "ended":
            return self._error(400, "invalid_request_error",
                               "results are available once processing has ended")
        lines = "".join(json.dumps(r) + "\n" for r in self._batch_results[batch["id"]])
        return web.Response(text=lines, content_type="application/binary")


def default_responder(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Text, or a minimal valid input for a forced tool."""
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "tool":
        tool = next(t for t in body["tools"] if t["name"] == choice["name"])
        return [{"type": "tool_use", "id": _id("toolu"), "name": tool["name"],
                 "input": minimal_instance(tool["input_schema"], tool["input_schema"])}]
    return [{"type": "text", "text": "Stub answer."}]


def minimal_instance(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """The smallest value valid for a JSON Schema (the subset msgspec emits)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return minimal_instance(root.get("$defs", {})[name], root)
    if "anyOf" in schema:
        return minimal_instance(schema["anyOf"][0], root)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: minimal_instance(schema["properties"][k], root)
                for k in schema.get("required", [])}
    return {"string": "", "integer": 0, "number": 0.0, "boolean": False, "array": [],
            "null": None}.get(kind if isinstance(kind, str) else "null")


def _parts(body: dict[str, Any]) -> list[tuple[Any, bool]]:
    """The prompt in cache order (tools, system, messages), each part with its marker."""
    parts: list[tuple[Any, bool]] = []
    for tool in body.get("tools") or ():
        parts.append((tool, "cache_control" in tool))
    system = body.get("system")
    if isinstance(system, str):
        parts.append((system, False))
    elif isinstance(system, list):
        parts += [(b, "cache_control" in b) for b in system]
    for m in body.get("messages") or ():
        content = m.get("content")
        if isinstance(content, str):
            parts.append(({"role": m.get("role"), "text": content}, False))
        else:
            parts += [(b, "cache_control" in b) for b in content or ()]
    return parts


def _cache_points(body: dict[str, Any]) -> list[int]:
    return [i for i, (_, marked) in enumerate(_parts(body)) if marked]


def _strip_cache(part: Any) -> Any:
    if isinstance(part, dict):
        return {k: v for k, v in part.items() if k != "cache_control"}
    return part


def _text_of(part: Any) -> Any:
    if isinstance(part, str):
        return part
    kind = part.get("type")
    if kind == "text":
        return part.get("text", "")
    if kind == "document":
        return [part.get("title", ""), part.get("context", ""), part["source"].get("data", "")]
    return _strip_cache(part)


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _seconds(wait: float) -> str:
    # The API sends whole seconds; scaled-down tests pass fractions, which the SDK accepts.
    return str(math.ceil(wait)) if wait >= 1 else f"{wait:.3f}"
