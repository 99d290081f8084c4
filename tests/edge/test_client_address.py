"""Client address resolution behind proxies, and rate-limit keying of addresses."""

from __future__ import annotations

import ipaddress

import pytest

from manas360.edge.client_address import client_ip, rate_key_address
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
    [("198.51.100.9:5555", "198.51.100.9"), ("[2001:db8:1:2::abcd]:443", "2001:db8:1:2::abcd"),
     ("[2001:db8:1:2::abcd]", "2001:db8:1:2::abcd")],
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


# rate_key_address -------------------------------------------------------------------------

def test_ipv4_is_keyed_as_is():
    assert rate_key_address("198.51.100.9") == "198.51.100.9"


def test_ipv6_is_keyed_by_its_64():
    assert rate_key_address("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64"
    assert rate_key_address("2001:db8:1:2::1") == rate_key_address("2001:db8:1:2:ffff::9")
    assert rate_key_address("2001:db8:1:3::1") != rate_key_address("2001:db8:1:2::1")


def test_ipv4_mapped_ipv6_is_keyed_as_ipv4():
    assert rate_key_address("::ffff:198.51.100.9") == "198.51.100.9"


@pytest.mark.parametrize("raw", ["evil} {ip:x", "a b\r\nc", "x" * 500, "unix:/run/app.sock", "\x00{}"])
def test_unparsable_address_is_sanitised_for_the_hash_tag(raw):
    address = rate_key_address(raw)
    assert 0 < len(address) <= 64
    assert not set(address) & set("{} \r\n\x00")
    key = Keys("p:").ip_rate(address, "global")
    assert key.count("{") == 1 and key.count("}") == 1


def test_empty_address_gets_a_placeholder():
    assert rate_key_address("") == "unknown"
