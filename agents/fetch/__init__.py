"""Fetching real sources for the scraping specialist: SSRF guard, polite aiohttp fetcher.

Example:
    >>> from agents.fetch import SsrfGuard
    >>> SsrfGuard().check_url("http://127.0.0.1/")
    'address 127.0.0.1 is loopback'
"""

from agents.fetch.fetcher import (
    Fetcher,
    FetchError,
    FetchResult,
    FetchSettings,
    HostLimiter,
    fetch_settings,
)
from agents.fetch.guard import FetchRefused, GuardedResolver, GuardSettings, SsrfGuard

__all__ = [
    "FetchError",
    "FetchRefused",
    "FetchResult",
    "FetchSettings",
    "Fetcher",
    "GuardSettings",
    "GuardedResolver",
    "HostLimiter",
    "SsrfGuard",
    "fetch_settings",
]
