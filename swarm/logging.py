"""Logging configuration: structlog, JSON lines for machines or console text for humans.

Loggers are built with :func:`structlog.make_filtering_bound_logger`, so a
call below the configured level is a no-op method and costs nothing.

Every line logged inside a task carries its ``task_id`` (and, while tracing is
on, ``trace_id`` and ``span_id``). Secrets never reach a sink: values under
secret-looking keys (``*token*``, ``*secret*``, ``*password*``, ``api_key``,
``authorization``, and payload fields typed :data:`Secret`) are masked, and so
are secret-shaped text anywhere, exceptions included (DSN passwords, bearer
tokens, ``sk-ant-`` keys): see :func:`redact_text`. Standard-library loggers
(aiohttp, asyncio, ...) go through the same chain.

Example:
    >>> import io
    >>> from swarm.logging import configure_logging
    >>> out = io.StringIO()
    >>> configure_logging(level="info", json=True, stream=out, timestamps=False)
    >>> import structlog
    >>> structlog.get_logger("demo").info("hello", n=1)
    >>> out.getvalue()
    '{"n": 1, "event": "hello", "level": "info", "logger": "demo"}\\n'
    >>> structlog.reset_defaults()
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging as _stdlib_logging
import re
import sys
import typing
from collections.abc import Mapping
from typing import Annotated, Any, TextIO

import msgspec
import structlog
from opentelemetry import trace

from swarm import tracing
from swarm.errors import ConfigError

__all__ = [
    "REDACTED",
    "Secret",
    "configure_logging",
    "current_task_id",
    "redact",
    "redact_text",
    "register_secret",
]

REDACTED = "***"

#: A message field whose value is masked whenever the message is logged.
Secret = Annotated[str, msgspec.Meta(extra={"secret": True})]

#: The id of the task whose handler runs in the current asyncio task (set by runtimes).
current_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "swarm_task_id", default=None
)

_SECRET_KEY = re.compile(
    r"token|secret|passw(or)?d|api[_-]?key|authorization|cookie|credential", re.IGNORECASE
)
# Secret-shaped text: the password of a URL's userinfo, a bearer or basic
# credential, an Anthropic key.
_DSN_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+(@)")
_AUTH_SCHEME = re.compile(r"\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_ANTHROPIC_KEY = re.compile(r"sk-ant-[A-Za-z0-9_-]+")
# ``'X-Api-Key': 'v'``, ``password=v``, ``"token": "v"`` inside text (a dict or
# headers formatted into a message).
_KEYED_TEXT = re.compile(
    r"""(?i)(["']?[\w-]*(?:token|secret|passw(?:or)?d|api[_-]?key|authorization|cookie)"""
    r"""[\w-]*["']?\s*[:=]\s*)(?:[(\[][^)\]]*[)\]]|(["']?)(?!\*\*\*|(?:bearer|basic)\s)"""
    r"""[^"'\s,;}&]+)"""
)
# Values seen under secret keys (and registered ones): masked in any later text,
# e.g. an exception message that quotes a key. Bounded, oldest dropped first.
_KNOWN: dict[str, None] = {}
_KNOWN_MAX = 256
_KNOWN_MIN_LEN = 6


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it appears in later log text (e.g. an API key read at startup)."""
    if len(value) < _KNOWN_MIN_LEN or value == REDACTED:
        return
    _KNOWN.pop(value, None)
    _KNOWN[value] = None
    if len(_KNOWN) > _KNOWN_MAX:
        del _KNOWN[next(iter(_KNOWN))]


def redact_text(text: str) -> str:
    """``text`` with secret-shaped parts masked.

    Example:
        >>> redact_text("postgresql://app:hunter2@db/x, Authorization: Bearer eyJhbGciOi.e30")
        'postgresql://app:***@db/x, Authorization: Bearer ***'
    """
    if "://" in text:
        text = _DSN_PASSWORD.sub(rf"\g<1>{REDACTED}\g<2>", text)
    text = _AUTH_SCHEME.sub(rf"\g<1>\g<2>{REDACTED}", text)
    if "sk-ant-" in text:
        text = _ANTHROPIC_KEY.sub(f"sk-ant-{REDACTED}", text)
    text = _KEYED_TEXT.sub(rf"\g<1>\g<2>{REDACTED}", text)
    for known in list(_KNOWN):
        if known in text:
            text = text.replace(known, REDACTED)
    return text


def _secret_fields(cls: type[msgspec.Struct]) -> frozenset[str]:
    found = _SECRET_FIELDS.get(cls)
    if found is None:
        names = set()
        for f in msgspec.structs.fields(cls):
            if _SECRET_KEY.search(f.name):
                names.add(f.name)
            for meta in typing.get_args(f.type)[1:] if typing.get_origin(f.type) else ():
                if isinstance(meta, msgspec.Meta) and (meta.extra or {}).get("secret"):
                    names.add(f.name)
        found = _SECRET_FIELDS[cls] = frozenset(names)
    return found


_SECRET_FIELDS: dict[type, frozenset[str]] = {}


def redact(value: Any, _depth: int = 0) -> Any:
    """``value`` with secrets masked: by key name in mappings and messages, by shape in text."""
    if isinstance(value, str):
        return redact_text(value)
    if _depth > 8:
        return value
    if isinstance(value, Mapping):
        return {
            k: _mask(v) if isinstance(k, str) and _SECRET_KEY.search(k) else redact(v, _depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, msgspec.Struct):
        secret = _secret_fields(type(value))
        return {
            f: _mask(getattr(value, f)) if f in secret else redact(getattr(value, f), _depth + 1)
            for f in value.__struct_fields__
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Field by field, as its repr would show it: a secret field never rendered.
        shown = []
        for f in dataclasses.fields(value):
            if f.repr:
                v = getattr(value, f.name)
                text = _mask(v) if _SECRET_KEY.search(f.name) and v else redact_text(repr(v))
                shown.append(f"{f.name}={text}")
        return f"{type(value).__name__}({', '.join(shown)})"
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    # Anything else is rendered through its repr or str: mask that text.
    return redact_text(repr(value))


def _mask(value: Any) -> str:
    if isinstance(value, str):
        register_secret(value)
    return REDACTED


def _redact_event(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if _SECRET_KEY.search(key):
            event[key] = _mask(value)
        elif not isinstance(value, (int, float, bool)) and value is not None:
            event[key] = redact(value)
    return event


def _redact_rendered(logger: Any, method: str, rendered: Any) -> Any:
    # The last word: whatever a renderer made of the event (exceptions included).
    if isinstance(rendered, str):
        return redact_text(rendered)
    return rendered


def _task_context(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    task_id = current_task_id.get()
    if task_id is not None:
        event.setdefault("task_id", task_id)
    if tracing._enabled:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event.setdefault("trace_id", f"{ctx.trace_id:032x}")
            event.setdefault("span_id", f"{ctx.span_id:016x}")
    return event


def configure_logging(
    *,
    level: str = "info",
    json: bool = False,
    stream: TextIO | None = None,
    timestamps: bool = True,
) -> None:
    """Configure structlog process-wide.

    Args:
        level: ``debug``, ``info``, ``warning``, ``error`` or ``critical``.
        json: One JSON object per line (for log shippers) instead of console text.
        stream: Where logs go (default: standard error, so reports on standard
            output stay clean).
        timestamps: Add an ISO-8601 UTC ``timestamp``.

    Raises:
        ConfigError: Unknown level.
    """
    number = _stdlib_logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ConfigError(f"unknown log level {level!r}")
    out = stream if stream is not None else sys.stderr
    shared: list[Any] = [structlog.processors.add_log_level]
    if timestamps:
        shared.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=_isatty(out))
    )
    # Exceptions are rendered to text before redaction, so a secret in an
    # exception message or traceback is masked like any other.
    tail: list[Any] = [
        structlog.processors.format_exc_info,
        _redact_event,
        renderer,
        _redact_rendered,
    ]
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _task_context,
        *shared[:1],
        _LoggerName(),
        *shared[1:],
        *tail,
    ]
    foreign: list[Any] = [
        _task_context,
        *shared[:1],
        structlog.stdlib.add_logger_name,
        *shared[1:],
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=_NamedPrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Standard-library loggers (aiohttp, asyncio, libraries) through the same chain.
    handler = _stdlib_logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=foreign,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    handler.set_name(_HANDLER_NAME)
    root = _stdlib_logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(number)


_HANDLER_NAME = "swarm"


class _NamedPrintLogger(structlog.PrintLogger):
    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedPrintLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(self._file, str(args[0]) if args else "")


class _LoggerName:
    def __call__(self, logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        name = getattr(logger, "name", "")
        if name:
            event.setdefault("logger", name)
        return event


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
