"""Who sent a request: the socket peer, or behind trusted proxies the client they name."""

from __future__ import annotations

from functools import lru_cache

from manas360.edge.client_address import IPNetwork, client_ip, client_source
from manas360.http.sanic_types import AppRequest

_CACHED_FORWARDED_CHARS = 256  # longer X-Forwarded-For values are resolved, not cached


def request_client_ip(request: AppRequest) -> str:
    """The client's address (computed once per request, then read from `request.ctx`).

    `request.ip` is the socket peer: Sanic is configured to believe no forwarding header
    itself. X-Forwarded-For counts only when that peer is in TRUSTED_PROXIES.
    """
    resolved = getattr(request.ctx, "client_address", None)
    if resolved is None:
        resolved = request.ctx.client_address = _request_addresses(request)
    return resolved[0]


def request_rate_address(request: AppRequest) -> str:
    """The source per-IP limits count this request under: `client_source` of the client's
    address (an IPv6 client by its RATE_LIMIT_IPV6_PREFIX network, /64 by default)."""
    resolved = getattr(request.ctx, "client_address", None)
    if resolved is None:
        resolved = request.ctx.client_address = _request_addresses(request)
    return resolved[1]


def _request_addresses(request: AppRequest) -> tuple[str, str]:
    forwarded = request.headers.getall("x-forwarded-for", None)
    forwarded_for = ",".join(forwarded) if forwarded else None
    settings = request.app.ctx.deps.settings
    trusted, ipv6_prefix = settings.proxy_networks, settings.rate_limit_ipv6_prefix
    if forwarded_for is not None and len(forwarded_for) > _CACHED_FORWARDED_CHARS:
        return _addresses(request.ip, forwarded_for, trusted, ipv6_prefix)
    return _cached_addresses(request.ip, forwarded_for, trusted, ipv6_prefix)


def _addresses(
    peer: str, forwarded_for: str | None, trusted: tuple[IPNetwork, ...], ipv6_prefix: int
) -> tuple[str, str]:
    address = client_ip(peer=peer, forwarded_for=forwarded_for, trusted=trusted)
    return address, client_source(address, ipv6_prefix=ipv6_prefix)


# Parsing addresses costs ~7 us a request; a keep-alive client sends the same values again.
_cached_addresses = lru_cache(maxsize=4096)(_addresses)
