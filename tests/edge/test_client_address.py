"""Client address resolution behind proxies, and the source a client is counted under."""

from __future__ import annotations

import ipaddress

import pytest

from manas360.edge.client_address import client_ip, client_source
from manas360.store.keys import Keys

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:ffff::/48"))
TWO_TIERS = PROXIES + (ipaddress.ip_network("192.168.0.0/16"),)


def _resolve(peer: str, forwarded_for: str | None, trusted=PROXIES) -> str:
    return client_ip(peer=peer, forwarded_for=forwarded_for, trusted=trusted)


# client_ip --------------------------------------------------------------------------------


def test_forwarded_for_from_untrusted_peer_is_ignored():
    assert _resolve("203.0.113.7", "198.51.100.9") == "203.0.113.7"


def test_nothing_is_trusted_without_trusted_networks():
    assert _resolve("10.0.0.2", "198.51.100.9", trusted=()) == "10.0.0.2"


def test_trusted_proxy_forwards_the_client():
    assert _resolve("10.0.0.2", "198.51.100.9") == "198.51.100.9"


def test_client_written_prefix_left_of_the_proxy_entry_is_ignored():
    assert _resolve("10.0.0.2", "1.1.1.1, 198.51.100.9") == "198.51.100.9"


def test_several_trusted_hops_are_skipped():
    chain = "1.1.1.1, 198.51.100.9, 192.168.1.5, 10.0.0.7"
    assert _resolve("10.0.0.2", chain, trusted=TWO_TIERS) == "198.51.100.9"


def test_chain_of_only_trusted_hops_gives_the_left_most():
    assert _resolve("10.0.0.2", "10.0.0.9, 10.0.0.8") == "10.0.0.9"


@pytest.mark.parametrize("forwarded_for", [None, "", "  "])
def test_trusted_peer_without_forwarded_for_is_the_client(forwarded_for):
    assert _resolve("10.0.0.2", forwarded_for) == "10.0.0.2"


@pytest.mark.parametrize(
    "forwarded_for, expected",
    [
        ("198.51.100.9, garbage, 10.0.0.8", "10.0.0.8"),
        ("198.51.100.9, unknown", "10.0.0.2"),
        ("198.51.100.9,,", "10.0.0.2"),
        ("198.51.100.9, 999.1.1.1", "10.0.0.2"),
        ("198.51.100.9, {ip:x}", "10.0.0.2"),
        ("198.51.100.9, " + "9" * 5000, "10.0.0.2"),
        ("\x00\xff, 198.51.100.9", "198.51.100.9"),
    ],
)
def test_garbage_entry_stops_the_walk_at_the_last_trusted_hop(forwarded_for, expected):
    assert _resolve("10.0.0.2", forwarded_for) == expected


def test_huge_chain_of_trusted_hops_is_bounded():
    chain = "198.51.100.9, " + ", ".join(["10.0.0.1"] * 5000)
    assert _resolve("10.0.0.2", chain) == "10.0.0.1"


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("198.51.100.9:5555", "198.51.100.9"),
        ("[2001:db8:1:2::abcd]:443", "2001:db8:1:2::abcd"),
        ("[2001:db8:1:2::abcd]", "2001:db8:1:2::abcd"),
    ],
)
def test_entries_with_port_or_brackets_are_read(entry, expected):
    assert _resolve("10.0.0.2", entry) == expected


def test_ipv6_proxy_chain():
    assert _resolve("2001:db8:ffff::1", "2001:db8:1:2::abcd, 2001:db8:ffff::2") == "2001:db8:1:2::abcd"


def test_ipv4_mapped_peer_is_matched_against_ipv4_networks():
    assert _resolve("::ffff:10.0.0.2", "198.51.100.9") == "198.51.100.9"
    assert _resolve("::ffff:203.0.113.7", "198.51.100.9") == "203.0.113.7"


def test_unparsable_peer_is_returned_not_raised():
    assert _resolve("unix:/run/app.sock", "198.51.100.9") == "unix:/run/app.sock"


# client_source ----------------------------------------------------------------------------

# (address as written, RATE_LIMIT_IPV6_PREFIX, source): every spelling of one client is one source.
SOURCES = [
    ("198.51.100.9", 64, "198.51.100.9"),
    ("198.51.100.9:5555", 64, "198.51.100.9"),
    ("::ffff:198.51.100.9", 64, "198.51.100.9"),
    ("::FFFF:198.51.100.9", 64, "198.51.100.9"),
    ("::ffff:c633:6409", 64, "198.51.100.9"),
    ("0:0:0:0:0:ffff:198.51.100.9", 64, "198.51.100.9"),
    ("[::ffff:198.51.100.9]:443", 64, "198.51.100.9"),
    ("::ffff:198.51.100.9", 128, "198.51.100.9"),
    ("2001:db8:1:2::1", 64, "2001:db8:1:2::/64"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"),
    ("2001:DB8:1:2:AAAA:BBBB:CCCC:DDDD", 64, "2001:db8:1:2::/64"),
    ("2001:0db8:0001:0002:0000:0000:0000:0001", 64, "2001:db8:1:2::/64"),
    ("[2001:db8:1:2::abcd]:443", 64, "2001:db8:1:2::/64"),
    ("[2001:db8:1:2::abcd]", 64, "2001:db8:1:2::/64"),
    (" 2001:db8:1:2::abcd ", 64, "2001:db8:1:2::/64"),
    ("2001:db8:1:2::abcd%eth0", 64, "2001:db8:1:2::/64"),
    ("2001:db8:1:2::abcd%7", 64, "2001:db8:1:2::/64"),
    ("[2001:db8:1:2::abcd%eth1]:80", 64, "2001:db8:1:2::/64"),
    ("fe80::1%eth0", 64, "fe80::/64"),
    ("fe80::2:3%wlan0", 64, "fe80::/64"),
    ("2001:db8:1:3::1", 64, "2001:db8:1:3::/64"),  # the neighbouring /64 is another source
    ("2001:db8:1:2ff::1", 56, "2001:db8:1:200::/56"),
    ("2001:db8:1:200::1", 56, "2001:db8:1:200::/56"),
    ("2001:db8:1:ffff:1::1", 48, "2001:db8:1::/48"),
    ("2001:db8:ffff:1::1", 32, "2001:db8::/32"),
    ("2001:db8:1:2::abcd", 128, "2001:db8:1:2::abcd/128"),
    ("2001:DB8:1:2::ABCD%eth0", 128, "2001:db8:1:2::abcd/128"),
    ("2001:db8:1:2::abcd", 127, "2001:db8:1:2::abcc/127"),
    ("2001:db8:1:2:8000::1", 65, "2001:db8:1:2:8000::/65"),
    ("2001:db8:1:2:7fff::1", 65, "2001:db8:1:2::/65"),
]


@pytest.mark.parametrize("written, prefix, source", SOURCES)
def test_every_spelling_of_one_client_is_one_source(written, prefix, source):
    assert client_source(written, ipv6_prefix=prefix) == source


@pytest.mark.parametrize("written, prefix, source", SOURCES)
def test_the_client_a_proxy_names_gives_the_same_source(written, prefix, source):
    """request_rate_address's two steps: the X-Forwarded-For walk (which keeps a zone id in
    the address sessions record), then the source."""
    resolved = _resolve("10.0.0.2", f"{written}, 10.0.0.9")
    assert resolved != "10.0.0.9"
    assert client_source(resolved, ipv6_prefix=prefix) == source


@pytest.mark.parametrize("raw", ["evil} {ip:x", "a b\r\nc", "x" * 500, "unix:/run/app.sock", "\x00{}"])
def test_unparsable_address_is_sanitised_for_the_hash_tag(raw):
    source = client_source(raw, ipv6_prefix=64)
    assert 0 < len(source) <= 64
    assert not set(source) & set("{} \r\n\x00")
    key = Keys("p:").ip_rate(source, "global")
    assert key.count("{") == 1 and key.count("}") == 1


def test_empty_address_gets_a_placeholder():
    assert client_source("", ipv6_prefix=64) == "unknown"
