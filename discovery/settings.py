"""Consul connection settings, parsed from a DSN.

``consul://[token@]host[:port][?dc=dc1&...]`` (``consuls://`` for TLS;
``http://`` and ``https://`` are accepted as synonyms, as CONSUL_HTTP_ADDR
spells them). Query
options: ``dc``, ``verify`` (``false`` or a CA bundle path), ``cert`` (client
certificate path), ``prefix`` (KV prefix), ``session_ttl``, ``lock_delay``,
``wait`` (blocking query wait), all in seconds where they are durations.

Example:
    >>> from discovery.settings import ConsulSettings
    >>> s = ConsulSettings.from_dsn("consuls://s3cret@consul.local?dc=eu1&lock_delay=2")
    >>> (s.scheme, s.host, s.port, s.dc, s.lock_delay, s.token == "s3cret")
    ('https', 'consul.local', 8501, 'eu1', 2.0, True)
    >>> "s3cret" in repr(s)
    False
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from swarm.errors import ConfigError

__all__ = ["ConsulSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsulSettings:
    """Where Consul is and how to talk to it.

    Attributes:
        host: Agent host.
        port: Agent HTTP(S) port.
        scheme: ``http`` or ``https``.
        token: ACL token sent as ``X-Consul-Token`` (never printed).
        dc: Datacenter (default: the agent's).
        verify: TLS verification: ``True``, ``False`` or a CA bundle path.
        cert: Client certificate (PEM path) for mutual TLS.
        prefix: KV prefix for config (``<prefix>/config/...``) and election keys.
        session_ttl: Leadership session TTL in seconds (Consul enforces >= 10
            by default and may invalidate up to twice this late).
        lock_delay: Seconds a lock stays unacquirable after its holder's
            session was invalidated (Consul's LockDelay; default short).
        wait: Blocking query wait in seconds.
        request_timeout: Timeout of non-blocking requests in seconds.
    """

    host: str = "127.0.0.1"
    port: int = 8500
    scheme: str = "http"
    token: str | None = field(default=None, repr=False)
    dc: str | None = None
    verify: bool | str = True
    cert: str | None = None
    prefix: str = "swarm"
    session_ttl: float = 10.0
    lock_delay: float = 1.0
    wait: float = 30.0
    request_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.scheme not in ("http", "https"):
            raise ConfigError(f"unsupported Consul scheme {self.scheme!r}")
        if self.wait <= 0 or self.session_ttl <= 0 or self.lock_delay < 0:
            raise ConfigError("wait and session_ttl must be positive, lock_delay >= 0")

    @property
    def address(self) -> str:
        """``scheme://host:port`` (no credentials)."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def http_timeout(self) -> float:
        """HTTP timeout of blocking queries: the wait, plus Consul's wait/16 jitter, plus slack."""
        return self.wait + self.wait / 16 + self.request_timeout

    @classmethod
    def from_dsn(cls, dsn: str) -> ConsulSettings:
        """Parse ``consul://[token@]host[:port][?options]``, ``consuls://`` (or http(s)://).

        Raises:
            ConfigError: Malformed DSN.
        """
        url = urllib.parse.urlsplit(dsn)
        if url.scheme not in ("consul", "consuls", "http", "https"):
            raise ConfigError("Consul DSN must start with consul://, consuls://, http:// or https://")
        tls = url.scheme in ("consuls", "https")
        q = dict(urllib.parse.parse_qsl(url.query))
        try:
            port = url.port or (8501 if tls else 8500)
            verify: bool | str = True
            if "verify" in q:
                v = q.pop("verify")
                verify = v.lower() not in ("0", "false", "no") if v.lower() in (
                    "0", "1", "true", "false", "yes", "no") else v
            token = urllib.parse.unquote(url.password or url.username or "") or None
            floats = {k: float(q.pop(k)) for k in
                      ("session_ttl", "lock_delay", "wait", "request_timeout") if k in q}
            settings = cls(
                host=url.hostname or "127.0.0.1", port=port, scheme="https" if tls else "http",
                token=token, dc=q.pop("dc", None), verify=verify, cert=q.pop("cert", None),
                prefix=q.pop("prefix", "swarm"), **floats,
            )
        except ValueError as exc:
            raise ConfigError(f"invalid Consul DSN: {exc}") from None
        if q:
            raise ConfigError(f"unknown Consul DSN options: {sorted(q)}")
        return settings
