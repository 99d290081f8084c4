"""/metrics: Prometheus text summed over every worker, restricted to allowed scrapers, and
every metric the shipped alerting rules use is exported."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from manas360.metrics import PUBLISH_INTERVAL_S
from tests.fixtures.accounts import PASSWORD, unique_email
from tests.fixtures.server import clients_per_worker, start_server

pytestmark = pytest.mark.slow
RULES = Path(__file__).resolve().parents[2] / "config" / "alerts.yml"
TOKEN = "scrape-token-for-tests-0123456789"
LOOPBACK = "127.0.0.0/8,::1/128"  # not the default: listed explicitly, as a deployment would


@pytest.fixture(scope="module")
def server(environ, database, tmp_path_factory):
    process = start_server(
        {**environ, "METRICS_TOKEN": TOKEN, "METRICS_ALLOWED_CIDRS": LOOPBACK},
        workers=2,
        tmp_dir=tmp_path_factory.mktemp("metrics-server"),
    )
    yield process
    process.stop()


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples, name: str, **labels) -> float:
    return sum(
        value
        for (sample, found), value in samples.items()
        if sample == name and all(dict(found).get(k) == v for k, v in labels.items())
    )


def test_counts_after_known_traffic_are_summed_over_both_workers(server):
    clients = clients_per_worker(server.url)
    before = _samples(clients[0].get("/metrics").text)
    for client in clients:
        for _ in range(5):
            assert client.get("/api/v1/plans").status_code == 200
    email = unique_email("metrics")
    assert clients[0].post("/api/v1/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    wrong = {"email": email, "password": "wrong password!"}
    assert clients[1].post("/api/v1/auth/login", json=wrong).status_code == 401
    login = clients[1].post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    bearer = {"authorization": f"Bearer {login.json()['access_token']}"}
    for client in clients:  # per worker: one verification by PyJWT, then two cache hits
        for _ in range(3):
            assert client.get("/api/v1/me", headers=bearer).status_code == 200
    # Each worker counts requests in its own memory and publishes them at most
    # PUBLISH_INTERVAL_S later (at once for the worker answering the scrape).
    deadline = time.monotonic() + 10 * PUBLISH_INTERVAL_S
    plans = {"route": "/api/v1/plans", "method": "GET"}
    while True:
        after = _samples(clients[1].get("/metrics").text)
        requests = _value(after, "manas360_http_requests_total", status="200", **plans) - _value(
            before, "manas360_http_requests_total", status="200", **plans
        )
        hits = _value(after, "manas360_token_cache_total", result="hit") - _value(
            before, "manas360_token_cache_total", result="hit"
        )
        timed = _value(after, "manas360_http_request_duration_seconds_count", **plans) - _value(
            before, "manas360_http_request_duration_seconds_count", **plans
        )
        # Every figure asserted below, not only the first two: a worker publishes its counters
        # one family after another, and a scrape can land between them.
        if (requests >= 10 and hits >= 4 and timed >= 10) or time.monotonic() > deadline:
            break
        time.sleep(PUBLISH_INTERVAL_S / 10)

    def delta(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert requests == 10
    assert (hits, delta("manas360_token_cache_total", result="miss")) == (4, 2)
    assert delta("manas360_entitlement_cache_total") == 6
    assert delta("manas360_http_request_duration_seconds_count", route="/api/v1/plans", method="GET") == 10
    le = {
        dict(labels)["le"]: value
        for (name, labels), value in after.items()
        if name == "manas360_http_request_duration_seconds_bucket" and dict(labels)["route"] == "/api/v1/plans"
    }
    assert le["+Inf"] >= 10 and list(le.values()) == sorted(le.values())  # cumulative buckets
    assert delta("manas360_logins_total", outcome="failure") == 1
    assert delta("manas360_logins_total", outcome="success") == 1
    assert _value(after, "manas360_db_pool_connections", state="max") == 2 * 20  # two workers' pools
    assert len({dict(labels)["pid"] for (name, labels) in after if name == "manas360_worker_memory_bytes"}) >= 2
    for client in clients:
        client.close()


def test_every_metric_in_the_alerting_rules_is_exported(server):
    rules = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {
        "Manas360HighErrorRate",
        "Manas360HighLatencyP95",
        "Manas360DatabasePoolSaturated",
        "Manas360FailedLoginSurge",
        "Manas360WorkerMemoryHigh",
    } <= set(alerts)
    exported = httpx.get(server.url + "/metrics").text
    names = {sample for (sample, _) in _samples(exported)}
    for alert, rule in alerts.items():
        assert rule["for"] and rule["labels"]["severity"]
        for metric in set(re.findall(r"manas360_[a-z0-9_]+", rule["expr"])):
            assert metric in names, f"{alert} uses {metric}, which /metrics does not export"


async def test_metrics_refuse_other_networks_without_the_token(environ, database):
    from manas360.settings import load_settings
    from tests.fixtures.app import client_for, running_app

    settings = load_settings({**environ, "METRICS_ALLOWED_CIDRS": "10.0.0.0/8", "METRICS_TOKEN": TOKEN})
    async with running_app(settings) as app, client_for(app, client_ip="192.0.2.7") as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 403 and refused.json()["error"] == "PermissionDenied"
        wrong = await client.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 403
        allowed = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200 and "manas360_http_requests_total" in allowed.text


async def test_loopback_is_not_trusted_by_default(environ, database):
    """A reverse proxy on the same host reaches us from loopback: only a listed network or
    the token opens /metrics."""
    from manas360.settings import load_settings
    from tests.fixtures.app import client_for, running_app

    env = {key: value for key, value in environ.items() if key != "METRICS_ALLOWED_CIDRS"}
    settings = load_settings({**env, "METRICS_TOKEN": TOKEN})
    assert settings.metrics_networks == ()
    async with running_app(settings) as app:
        for loopback in ("127.0.0.1", "::1"):
            async with client_for(app, client_ip=loopback) as client:
                refused = await client.get("/metrics")
                assert refused.status_code == 403 and refused.json()["error"] == "PermissionDenied"
                allowed = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
                assert allowed.status_code == 200


async def test_listed_loopback_scrapes_without_a_token(environ, database):
    from manas360.settings import load_settings
    from tests.fixtures.app import client_for, running_app

    settings = load_settings({**environ, "METRICS_ALLOWED_CIDRS": LOOPBACK})
    async with running_app(settings) as app, client_for(app, client_ip="127.0.0.1") as client:
        assert (await client.get("/metrics")).status_code == 200


_GARBAGE_METHODS = ["X" * 6000, "BREW", "PROPFIND", "M-SEARCH", "Z" + "Q" * 300]
_PATHS = ("/api/v1/plans", "/health/live", "/nowhere-{}")


def _http_series(text: str) -> set[tuple[str, tuple]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("manas360_http_")
    }


async def test_client_chosen_methods_and_paths_mint_no_series(environ, database):
    """Any token is a valid HTTP method and any path may be requested: neither may become a
    label value (each would be a series kept by every worker until restart)."""
    from manas360.settings import load_settings
    from tests.fixtures.app import client_for, running_app

    settings = load_settings({**environ, "METRICS_TOKEN": TOKEN})
    scrape = {"authorization": f"Bearer {TOKEN}"}
    async with running_app(settings) as app, client_for(app) as client:
        for path in _PATHS:  # one unknown method first: its "other" series may appear once
            await client.request("BREW", path.format("warm"))
        await client.get("/metrics", headers=scrape)  # the scrape's own series, too
        before = _http_series((await client.get("/metrics", headers=scrape)).text)
        for round_ in range(3):
            for method in _GARBAGE_METHODS:
                for path in _PATHS:
                    response = await client.request(method, path.format(f"{round_}-{method[:20]}"))
                    assert response.status_code < 500
        text = (await client.get("/metrics", headers=scrape)).text
    for method in _GARBAGE_METHODS + ["nowhere"]:
        assert method not in text, f"{method[:30]!r} became a label"
    after = _http_series(text)
    assert after == before, sorted(after - before)[:10]
    methods = {dict(labels)["method"] for _, labels in after}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


def test_a_readiness_probe_that_gives_up_is_counted_499_not_500(environ, database, tmp_path):
    """A probe whose client stops waiting (a kubelet's 1 s timeout) while the worker's check
    is still running: Sanic cancels the handler and renders a response nobody receives,
    which the metrics counted as a 500. Redis here accepts connections and never answers,
    so every readiness check takes its full timeout, as a starting worker's first check
    could while it opened its pools."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        redis_url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        server = start_server(
            {**environ, "REDIS_URL": redis_url, "METRICS_ALLOWED_CIDRS": LOOPBACK},
            workers=1,
            ready_path="/health/live",
            tmp_dir=tmp_path,
        )
        try:
            deadline = time.monotonic() + 10
            while True:  # until a probe meets a check (start_server's /health calls left a result ~1 s)
                try:
                    assert httpx.get(server.url + "/health/ready", timeout=0.3).status_code == 503
                except httpx.ReadTimeout:
                    break
                assert time.monotonic() < deadline, "every probe was answered from a reused result"
            ready = {"route": "/health/ready", "method": "GET"}
            deadline = time.monotonic() + 10 * PUBLISH_INTERVAL_S
            while True:  # counted once the handler is cancelled, published within a second
                samples = _samples(httpx.get(server.url + "/metrics", timeout=5).text)
                given_up = sum(
                    _value(samples, "manas360_http_requests_total", status=status, **ready) for status in ("499", "500")
                )
                if given_up or time.monotonic() > deadline:
                    break
                time.sleep(PUBLISH_INTERVAL_S / 10)
        finally:
            server.stop()
    assert _value(samples, "manas360_http_requests_total", status="499", **ready) == 1, server.log()[-3000:]
    assert _value(samples, "manas360_http_requests_total", status="500", **ready) == 0
