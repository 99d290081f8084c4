"""The checker every httpx client of the suite runs (tests/fixtures/contract.py) is on, and
it refuses what the contract does not say."""

from __future__ import annotations

import httpx

from tests.fixtures import contract

JSON = httpx.Headers({"content-type": "application/json", "x-request-id": "r1"})
ENVELOPE = b'{"error": "NotFound", "message": "Not found", "request_id": "r1"}'


def test_every_client_of_the_suite_carries_the_check():
    with httpx.Client() as client:
        assert contract.check_sync in client.event_hooks["response"]


def test_conforming_answers_pass():
    problems = contract.contract().problems
    assert problems("GET", "/api/v1/admin/users/nope", 404, JSON, ENVELOPE) == []
    assert problems("GET", "/no/such/route", 404, JSON, ENVELOPE) == []
    assert problems("POST", "/api/v1/auth/logout", 204, httpx.Headers({"x-request-id": "r1"}), b"") == []
    assert problems("OPTIONS", "/api/v1/me", 204, httpx.Headers(), b"") == []  # CORS preflight: outside


def test_what_the_contract_does_not_say_is_refused():
    problems = contract.contract().problems
    assert "not documented" in problems("GET", "/api/v1/me", 418, JSON, ENVELOPE)[0]
    assert "was unexpected" in problems("GET", "/api/v1/me", 404, JSON, ENVELOPE[:-1] + b', "extra": 1}')[0]
    assert (
        "content type"
        in problems(
            "GET", "/api/v1/plans", 200, httpx.Headers({"content-type": "text/html", "x-request-id": "r1"}), b"<p>"
        )[0]
    )
    assert "required property" in problems("GET", "/api/v1/plans", 200, JSON, b"{}")[0]
    assert (
        "no X-Request-ID"
        in problems("GET", "/api/v1/plans", 200, httpx.Headers({"content-type": "application/json"}), b'{"items": []}')[
            0
        ]
    )
    assert problems("DELETE", "/api/v1/plans", 405, JSON, b'{"error": 1}')  # a 405 is the envelope too
