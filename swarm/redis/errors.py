"""redis-py's errors translated into the :class:`~swarm.errors.SwarmError` tree, at one point.

As httpx's ``map_httpcore_exceptions`` does for its transport: every public
entry point of the Redis runtime, ledger and helpers runs its Redis work
inside :func:`map_redis_errors` (or, on a hot path, catches
:data:`CLIENT_ERRORS` and raises :func:`transport_error`), so no raw
``redis.exceptions`` error reaches a user. Errors of the tree pass through
unchanged, and so do timeouts the caller asked for.

Example:
    >>> from redis.exceptions import ConnectionError
    >>> from swarm.redis.errors import map_redis_errors
    >>> try:
    ...     with map_redis_errors("reading the ledger"):
    ...         raise ConnectionError("Connection refused")
    ... except Exception as exc:
    ...     print(type(exc).__name__, exc)
    TransportError reading the ledger: Connection refused
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import RedisError

from swarm.errors import SwarmError, TransportError

__all__ = ["CLIENT_ERRORS", "map_redis_errors", "mapped", "transport_error"]

P = ParamSpec("P")
T = TypeVar("T")

#: What the client library raises for a server it cannot reach or that
#: answered with an error (socket errors come through as ``OSError``).
CLIENT_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError)


def transport_error(exc: BaseException, what: str) -> Exception:
    """The error of the tree that ``exc`` (raised while ``what``) becomes."""
    if isinstance(exc, SwarmError) or (
        isinstance(exc, TimeoutError) and not isinstance(exc, RedisError)
    ):
        return exc if isinstance(exc, Exception) else TransportError(f"{what}: {exc!r}")
    return TransportError(f"{what}: {exc}")


@contextmanager
def map_redis_errors(what: str) -> Iterator[None]:
    """Raise redis-py (and socket) errors of the block as :class:`~swarm.errors.TransportError`."""
    try:
        yield
    except SwarmError:
        raise
    except CLIENT_ERRORS as exc:
        err = transport_error(exc, what)
        if err is exc:
            raise
        raise err from exc


_Coro = Callable[P, Coroutine[Any, Any, T]]


def mapped(what: str) -> Callable[[_Coro[P, T]], _Coro[P, T]]:
    """Decorate a (cold-path) coroutine function with :func:`map_redis_errors`."""

    def decorate(fn: _Coro[P, T]) -> _Coro[P, T]:
        @wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with map_redis_errors(what):
                return await fn(*args, **kwargs)

        return wrapper

    return decorate
