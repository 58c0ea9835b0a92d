"""Logging configuration: structlog, JSON lines for machines or console text for humans.

Loggers are built with :func:`structlog.make_filtering_bound_logger`, so a
call below the configured level is a no-op method and costs nothing.

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

import logging as _stdlib_logging
import sys
from typing import Any, TextIO

import structlog

from swarm.errors import ConfigError

__all__ = ["configure_logging"]


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
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _LoggerName(),
    ]
    if timestamps:
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    if json:
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=_isatty(out)))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=_NamedPrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


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
