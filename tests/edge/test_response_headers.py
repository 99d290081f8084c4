"""ApiResponse encodes its headers itself (a faster path than Sanic's): what goes on the
wire must be exactly what Sanic's own response would send, header injection included."""

from __future__ import annotations

import pytest
from sanic.response import HTTPResponse

from manas360.http.responses import ApiResponse

TRICKY = [
    "plain",
    "",
    "a\r\nSet-Cookie: x=1",
    "\r",
    "\n",
    "\x00",
    "tab\tinside",
    "ünïcödé",
    "\udcff",
    "end\r\n",
    "\r\n\r\nbody",
    "a\x00b\rc\nd",
]


@pytest.mark.parametrize("value", TRICKY)
def test_header_values_are_sanitised_as_sanic_does(value):
    ours = ApiResponse(b"{}", headers={"X-Probe": value}, content_type="application/json")
    sanic = HTTPResponse(b"{}", headers={"X-Probe": value}, content_type="application/json")
    assert list(ours.processed_headers) == list(sanic.processed_headers)
    for name, encoded in ours.processed_headers:
        assert b"\r" not in name + encoded and b"\n" not in name + encoded and b"\x00" not in name + encoded


@pytest.mark.parametrize("name", ["X-Probe\r\nSet-Cookie", "X\x00Y", "X-\nZ"])
def test_header_names_are_sanitised_as_sanic_does(name):
    ours = ApiResponse(b"{}", headers={name: "v"}, content_type="application/json")
    sanic = HTTPResponse(b"{}", headers={name: "v"}, content_type="application/json")
    assert list(ours.processed_headers) == list(sanic.processed_headers)


def test_non_string_values_and_the_body_rules_match_sanic():
    for status in (200, 204, 304):
        ours = ApiResponse(b"", status=status, headers={"content-length": 0, "X-N": 7}, content_type="application/json")
        sanic = HTTPResponse(
            b"", status=status, headers={"content-length": 0, "X-N": 7}, content_type="application/json"
        )
        assert list(ours.processed_headers) == list(sanic.processed_headers)


def test_constant_headers_follow_the_others():
    response = ApiResponse(b"{}", headers={"X-A": "1"}, content_type="application/json")
    response.constant_headers = ((b"X-Frame-Options", b"DENY"),)
    assert list(response.processed_headers) == [
        (b"X-A", b"1"),
        (b"content-type", b"application/json"),
        (b"X-Frame-Options", b"DENY"),
    ]
