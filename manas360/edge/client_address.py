"""Who sent a request (behind trusted proxies), and the source its limits count it under.

`forwarded_for` is the X-Forwarded-For value; a request carrying several such header lines
must have them joined with "," in order by the caller.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAX_HOPS = 32
_MAX_ADDRESS_CHARS = 64
_BRACKETED = re.compile(r"\[([^\]]+)\](?::\d{1,5})?")
_IPV4_WITH_PORT = re.compile(r"([0-9.]+):\d{1,5}")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9.:/_-]")


def client_ip(*, peer: str, forwarded_for: str | None, trusted: tuple[IPNetwork, ...]) -> str:
    """The socket peer, or behind trusted proxies the right-most untrusted X-Forwarded-For hop."""
    peer_ip = parse_ip(peer)
    if peer_ip is None:
        return peer
    # Only a trusted proxy's X-Forwarded-For is believed; anyone else can write anything there.
    if not is_trusted(peer_ip, trusted=trusted):
        return str(peer_ip)
    last_trusted = peer_ip
    for entry in _hops_from_right(forwarded_for):
        hop = parse_ip(entry)
        if hop is None:
            # Entries left of an unreadable one were not vouched for by a proxy we can parse.
            break
        if not is_trusted(hop, trusted=trusted):
            return str(hop)
        last_trusted = hop
    return str(last_trusted)


def client_source(ip: str, *, ipv6_prefix: int) -> str:
    """The source every per-client limit counts `ip` under (each rate-limit policy keyed by
    address; a per-source login lockout too): an IPv4 address as is, an IPv6 address by its
    network of `ipv6_prefix` bits (RATE_LIMIT_IPV6_PREFIX, 32..128), e.g. "2001:db8:1:2::/64".

    Every spelling of one client gives one source: upper or lower case, leading zeros,
    brackets and a port, a zone id (`fe80::1%eth0`), an IPv4-mapped IPv6 address
    (`::ffff:192.0.2.1` is 192.0.2.1). Anything unparsable is sanitised into a safe key.
    """
    address = parse_ip(ip)
    if address is None:
        return _UNSAFE_KEY_CHARS.sub("_", ip[:_MAX_ADDRESS_CHARS]) or "unknown"
    if address.version == 4:
        return str(address)
    # One subscriber usually holds a whole /64 (or more): keying full addresses would let it
    # rotate through 2**64 of them to escape the limit. The network drops any zone id.
    host_bits = 128 - ipv6_prefix
    return str(ipaddress.IPv6Network((int(address) >> host_bits << host_bits, ipv6_prefix)))


def parse_ip(text: str) -> IPAddress | None:
    """An address from a peer or X-Forwarded-For entry (brackets and a port allowed), else None."""
    text = (text or "").strip()
    if not text or len(text) > _MAX_ADDRESS_CHARS:
        return None
    match = _BRACKETED.fullmatch(text) or _IPV4_WITH_PORT.fullmatch(text)
    try:
        address = ipaddress.ip_address(match.group(1) if match else text)
    except ValueError:
        return None
    return _unmapped(address)


def is_trusted(address: IPAddress, *, trusted: tuple[IPNetwork, ...]) -> bool:
    """Whether the address lies in one of the trusted proxy networks."""
    return any(address in network for network in trusted)


def _unmapped(address: IPAddress) -> IPAddress:
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _hops_from_right(forwarded_for: str | None) -> list[str]:
    # rsplit bounds the work on a hostile header; hops beyond the cap are never read.
    if not forwarded_for:
        return []
    return forwarded_for.rsplit(",", _MAX_HOPS)[::-1][:_MAX_HOPS]
