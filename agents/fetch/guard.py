"""SSRF guard: which URLs and addresses a fetch may reach.

Every fetch of the scraping specialist goes through :class:`SsrfGuard`:

* only ``http`` and ``https``, no credentials in the URL, a host present;
* the host is resolved and **every** address it resolves to must be public:
  loopback, private, shared (CGNAT), link-local, multicast, reserved,
  unspecified and cloud-metadata addresses are refused, in IPv4 and IPv6,
  including IPv4-mapped, 6to4, NAT64 and Teredo forms that embed an IPv4
  address, and the legacy spellings of IPv4 (``2130706433``, ``0x7f.1``,
  ``0177.0.0.1``, ``127.1``) that C resolvers accept;
* metadata host names (``metadata.google.internal``...) are refused by name;
* :class:`GuardedResolver` is the resolver of the fetch's connector, so the
  address checked is the address connected to: a DNS answer that changes
  between check and connect (rebinding) is checked again where it is used.

Local addresses are reachable only through :attr:`GuardSettings.allow`, an
explicit list of networks, empty by default (the tests' local server is
allowed that way).

Example:
    >>> from agents.fetch.guard import GuardSettings, SsrfGuard
    >>> guard = SsrfGuard(GuardSettings())
    >>> guard.check_url("file:///etc/passwd")
    "scheme 'file' is not allowed (only http, https)"
    >>> guard.check_address("169.254.169.254")
    'address 169.254.169.254 is link-local (cloud metadata)'
    >>> guard.check_address("8.8.8.8") is None
    True
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from swarm.errors import TransportError

__all__ = ["FetchRefused", "GuardSettings", "GuardedResolver", "SsrfGuard", "refused_reason"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.com", "metadata.packet.net",
    "169.254.169.254.nip.io",
})
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254",
              "192.0.0.192")
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LEGACY_V4 = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.I)


class FetchRefused(TransportError):
    """The guard refused a URL or address; ``reason`` says why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"refused {url}: {reason}")
        self.url = url
        self.reason = reason


class _ResolverRefused(OSError):
    """Raised inside the connector (which expects OSError); mapped to :class:`FetchRefused`."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(reason)
        self.host = host
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardSettings:
    """What the guard lets through.

    Attributes:
        allow: Networks (CIDR) reachable although not public, e.g.
            ``("127.0.0.0/8",)`` for a local test server. Empty by default.
        schemes: URL schemes allowed.
    """

    allow: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ("http", "https")


def _literal(host: str) -> IPAddress | None:
    """The address a host literal denotes, legacy IPv4 spellings included."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if _LEGACY_V4.match(text):
        try:  # inet_aton reads 127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1 as C resolvers do
            return ipaddress.IPv4Address(socket.inet_aton(text.rstrip(".")))
        except OSError:
            return None
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    # IPv4-compatible (deprecated) ::a.b.c.d
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip))
    return None


def _why_blocked(ip: IPAddress) -> str | None:
    if ip in _METADATA_ADDRESSES:
        kind = "link-local" if ip.is_link_local else "private" if ip.is_private else "reserved"
        return f"{kind} (cloud metadata)"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            why = _why_blocked(inner)
            if why is not None:
                return f"embeds {inner}, which is {why}"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("shared address space (CGNAT)", isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        ("not globally routable", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return name
    return None


class SsrfGuard:
    """Checks URLs and resolved addresses (see the module docstring)."""

    def __init__(self, settings: GuardSettings | None = None) -> None:
        self.settings = settings or GuardSettings()
        self._allow = tuple(ipaddress.ip_network(n, strict=False) for n in self.settings.allow)

    def allowed(self, ip: IPAddress) -> bool:
        """Whether ``ip`` is on the explicit allow-list."""
        return any(ip.version == n.version and ip in n for n in self._allow)

    def check_address(self, address: str | IPAddress) -> str | None:
        """Why ``address`` may not be connected to, or None when it may."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if self.allowed(ip):
            return None
        why = _why_blocked(ip)
        if why is None:
            return None
        return f"address {ip} {why}" if why.startswith("embeds") else f"address {ip} is {why}"

    def check_url(self, url: str | URL) -> str | None:
        """Why ``url`` may not be fetched (before resolving), or None."""
        try:
            u = url if isinstance(url, URL) else URL(url)
        except (ValueError, TypeError) as exc:
            return f"unparsable URL: {exc}"
        scheme = (u.scheme or "").lower()
        if scheme not in self.settings.schemes:
            allowed = ", ".join(self.settings.schemes)
            return f"scheme {scheme or '(none)'!r} is not allowed (only {allowed})"
        if u.user is not None or u.password is not None:
            return "credentials in the URL are not allowed"
        host = (u.raw_host or "").lower().rstrip(".")
        if not host:
            return "no host"
        if host in _METADATA_NAMES or host.endswith(".internal"):
            return f"host {host!r} is a cloud metadata name"
        if host == "localhost" or host.endswith(".localhost"):
            ip = ipaddress.ip_address("127.0.0.1")
            return None if self.allowed(ip) else f"host {host!r} is loopback"
        literal = _literal(host)
        if literal is not None:
            return self.check_address(literal)
        return None

    async def resolve(self, host: str, port: int = 0) -> list[IPAddress]:
        """Resolve ``host`` and check every address.

        Raises:
            FetchRefused: Some address is refused, or the name does not resolve.
        """
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise FetchRefused(host, f"cannot resolve {host!r}: {exc}") from exc
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        for ip in addresses:
            why = self.check_address(ip)
            if why is not None:
                raise FetchRefused(host, f"{host} resolves to a refused address: {why}")
        return addresses


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that refuses any answer the guard refuses.

    The connector connects to the addresses this returns, so the check and
    the connection see the same answer (the resolved address is pinned).
    """

    def __init__(self, guard: SsrfGuard, inner: AbstractResolver | None = None) -> None:
        self.guard = guard
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        literal = _literal(host)
        results: list[ResolveResult]
        if literal is not None:
            fam = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            results = [
                {"hostname": host, "host": str(literal), "port": port, "family": fam,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}
            ]
        else:
            results = await self.inner.resolve(host, port, family)
        for r in results:
            why = self.guard.check_address(r["host"])
            if why is not None:
                raise _ResolverRefused(host, f"{host} resolves to a refused address: {why}")
        return results

    async def close(self) -> None:
        await self.inner.close()


def refused_reason(exc: BaseException) -> str | None:
    """The guard's reason when ``exc`` (or its cause chain) is a resolver refusal."""
    seen: set[int] = set()
    cur: Any = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, _ResolverRefused):
            return cur.reason
        cur = getattr(cur, "os_error", None) or cur.__cause__ or cur.__context__
    return None
