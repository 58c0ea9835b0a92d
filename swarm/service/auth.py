"""Bearer tokens of the HTTP API: roles, hashed storage, constant-time checks.

Roles, each including the ones before it: ``viewer`` (read), ``operator``
(submit, cancel, redrive, store memories) and ``admin`` (live config,
forgetting memories). Tokens are kept as SHA-256 digests only: a tokens file
holds ``ROLE SHA256HEX [NAME]`` lines (``queenswarm token ROLE`` makes one);
``SWARM_TOKENS`` gives ``ROLE:SECRET`` pairs, hashed as they are read. A
presented token is hashed and compared with every digest in constant time.

Bound to a loopback address with no tokens, the API is open (and says so);
bound to any other address with no tokens, it refuses to start.

Example:
    >>> from swarm.service.auth import TokenStore, hash_token
    >>> store = TokenStore.parse_lines([f"operator {hash_token('s3cret')} ci"])
    >>> store.role_of("s3cret"), store.role_of("guess")
    ('operator', None)
    >>> store.allows("operator", "viewer"), store.allows("operator", "admin")
    (True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from swarm.errors import ConfigError
from swarm.settings import SwarmSettings

__all__ = ["ROLES", "TokenStore", "hash_token", "is_loopback", "new_token"]

#: Roles, least to most privileged.
ROLES = ("viewer", "operator", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}
_HEX = frozenset("0123456789abcdef")


def hash_token(secret: str) -> str:
    """The SHA-256 hex digest a token is stored as."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return "qs_" + secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    role: str
    name: str


class TokenStore:
    """Known tokens, by digest; empty means "open" (allowed on loopback only)."""

    def __init__(self, entries: Iterable[_Entry] = ()) -> None:
        self._entries = tuple(entries)

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def parse_lines(cls, lines: Iterable[str], *, source: str = "tokens") -> TokenStore:
        """Parse ``ROLE SHA256HEX [NAME]`` lines (``#`` comments and blanks skipped).

        Raises:
            ConfigError: A line is malformed (the message names the line, never a digest).
        """
        entries = []
        for n, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            if len(parts) not in (2, 3) or parts[0] not in _RANK:
                raise ConfigError(
                    f"{source} line {n}: expected 'ROLE SHA256HEX [NAME]' with ROLE one of "
                    f"{', '.join(ROLES)}"
                )
            digest = parts[1].lower()
            if len(digest) != 64 or not set(digest) <= _HEX:
                raise ConfigError(f"{source} line {n}: the token must be a SHA-256 hex digest")
            name = parts[2] if len(parts) == 3 else f"{source}:{n}"
            entries.append(_Entry(bytes.fromhex(digest), parts[0], name))
        return cls(entries)

    @classmethod
    def from_settings(cls, settings: SwarmSettings) -> TokenStore:
        """Tokens of the settings' tokens file and ``ROLE:SECRET`` pairs.

        Raises:
            ConfigError: Unreadable file, bad line, or no tokens on a public address.
        """
        entries: list[_Entry] = []
        if settings.tokens_file is not None:
            try:
                with open(settings.tokens_file, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read tokens file {settings.tokens_file!r}: {exc.strerror}"
                ) from None
            entries += cls.parse_lines(lines, source=settings.tokens_file)._entries
        for n, pair in enumerate(settings.tokens, 1):
            role, sep, secret = pair.partition(":")
            if not sep or role not in _RANK or len(secret) < 16:
                raise ConfigError(
                    f"SWARM_TOKENS entry {n}: expected ROLE:SECRET with ROLE one of "
                    f"{', '.join(ROLES)} and a secret of at least 16 characters"
                )
            entries.append(_Entry(bytes.fromhex(hash_token(secret)), role, f"env:{n}"))
        store = cls(entries)
        address = settings.http_address
        if address is not None and not store and not is_loopback(address[0]):
            raise ConfigError(
                f"refusing to serve the HTTP API on {address[0]}:{address[1]} without tokens: "
                "anyone who reaches it could submit tasks and change config. Configure "
                "--tokens-file or SWARM_TOKENS, or bind a loopback address such as 127.0.0.1"
            )
        return store

    def role_of(self, secret: str) -> str | None:
        """The role of a presented token, or None. Every digest is compared."""
        presented = hashlib.sha256(secret.encode()).digest()
        found: str | None = None
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.digest):
                found = entry.role
        return found

    @staticmethod
    def allows(role: str, needed: str) -> bool:
        """Whether ``role`` may do what ``needed`` may."""
        return _RANK[role] >= _RANK[needed]
