"""Drills: Redis SIGKILLed while requests flow, then back empty on the same port; and
Redis frozen (SIGSTOP: connections stay up, nothing answers) then thawed.

docs/architecture.md, "Failure behaviour": authenticated routes and login answer 503 (fail closed,
within the Redis timeouts), public routes keep working, the service recovers by itself;
and losing every key must not resurrect a revoked token or unlock a locked account
(PostgreSQL keeps both).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.drills.helpers import (
    DASHBOARD,
    OUTAGE_ANSWER_BOUND_S,
    answer,
    login,
    readiness_after_a_change,
    register,
    report,
    serving,
)
from tests.drills.traffic import Traffic, outcome_of
from tests.fixtures.accounts import API, PASSWORD
from tests.fixtures.environment import SERVICE_KEY
from tests.fixtures.server import clients_per_worker
from tests.fixtures.services import wait_until

pytestmark = pytest.mark.slow
LOCKOUT_THRESHOLD = 5  # the default, which test_environ leaves alone
RECOVERY_BOUND_S = 10.0
REDIS_TIMEOUT_S = 1.0  # REDIS_SOCKET_TIMEOUT_S and REDIS_CONNECT_TIMEOUT_S, by default
FROZEN_ANSWER_BOUND_S = 4 * REDIS_TIMEOUT_S + 1.5
"""A frozen Redis costs a request at most four timeouts (login, measured ~4 s before the
`auth` policy failed closed): the global limiter's check (fails open), then the auth
limiter's (fails closed: 503, or at once while the limiter's breaker is open)."""


def introspect(http: httpx.Client, token: str) -> httpx.Response:
    return http.post(
        f"{API}/auth/introspect", json={"token": token}, headers={"authorization": f"Bearer {SERVICE_KEY}"}
    )


def test_redis_killed_and_restarted_empty_fails_closed_then_recovers_without_forgetting(
    drill_environ, private_redis, tmp_path, record_property
):
    with (
        serving(drill_environ(REDIS_URL=private_redis.url), tmp_path) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        warm, revoked, locked = register(http), register(http), register(http)
        assert answer(http.get(DASHBOARD, headers=warm.headers)) == (200, "")
        assert http.post(f"{API}/auth/logout", headers=revoked.headers).status_code == 204
        assert [answer(login(http, locked.email, "wrong password"))[0] for _ in range(LOCKOUT_THRESHOLD)] == [
            401
        ] * LOCKOUT_THRESHOLD
        assert answer(login(http, locked.email)) == (423, "AccountLocked")
        workers = clients_per_worker(server.url)

        with Traffic(server.url, DASHBOARD, headers=warm.headers) as traffic:
            traffic.wait_for(lambda o: o.status == 200, count=5)
            killed_at = time.monotonic()
            private_redis.kill()
            traffic.wait_for(lambda o: o.started > killed_at and o.status == 503, count=5)

            during = [outcome_of(lambda w=w: w.get(DASHBOARD, headers=warm.headers)) for w in workers for _ in range(3)]
            during += [outcome_of(lambda w=w: w.get(f"{API}/me", headers=warm.headers)) for w in workers]
            during += [outcome_of(lambda w=w: login(w, warm.email)) for w in workers]
            # Another service asking about a token gets "try again", never a guess either way.
            during += [outcome_of(lambda w=w: introspect(w, warm.pair["access_token"])) for w in workers]
            plans = [w.get(f"{API}/plans").status_code for w in workers]

            restarted_at = time.monotonic()
            private_redis.start()  # empty: no persistence
            # Login too: its `auth` limit fails closed, for STORE_RETRY_S after a worker's last
            # Redis error as well (the limiter's breaker), so it may recover a moment later.
            recovery_s = wait_until(
                lambda: all(
                    w.get(DASHBOARD, headers=warm.headers).status_code == 200
                    and login(w, locked.email).status_code != 503
                    for w in workers
                ),
                timeout=RECOVERY_BOUND_S,
                what="gated requests and logins to succeed again on every worker",
            )
            traffic.wait_for(lambda o: o.started > restarted_at + recovery_s and o.status == 200, count=5)

        outage = [o for o in traffic.outcomes if killed_at < o.started and o.ended < restarted_at] + during
        assert {(o.status, o.error) for o in outage} == {(503, "ServiceUnavailable")}, traffic.summary()
        assert max(o.elapsed for o in outage) < OUTAGE_ANSWER_BOUND_S
        assert plans == [200] * len(workers)  # a public route needs no Redis
        assert not [o for o in traffic.outcomes if o.status is None or (o.status >= 500 and o.status != 503)], (
            traffic.summary()
        )

        # Every key is gone; PostgreSQL still knows what was revoked and locked, on every worker.
        for worker in clients_per_worker(server.url):
            assert answer(worker.get(DASHBOARD, headers=revoked.headers)) == (401, "TokenRevoked")
            assert answer(worker.get(f"{API}/me", headers=revoked.headers)) == (401, "TokenRevoked")
            assert answer(worker.post(f"{API}/auth/refresh", json={"refresh_token": revoked.refresh_token}))[0] == 401
            assert answer(login(worker, locked.email, PASSWORD)) == (423, "AccountLocked")
            assert answer(worker.get(DASHBOARD, headers=warm.headers)) == (200, "")
            assert introspect(worker, revoked.pair["access_token"]).json() == {"active": False}
            assert introspect(worker, warm.pair["access_token"]).json()["active"] is True

    latencies = sorted(o.elapsed for o in outage)
    report(
        record_property,
        "redis",
        {
            "outage_answers": len(outage),
            "outage_answer_max_s": round(latencies[-1], 3),
            "outage_answer_median_s": round(latencies[len(latencies) // 2], 3),
            "recovery_after_restart_s": round(recovery_s, 3),
            "requests_total": len(traffic.outcomes),
        },
    )


def test_a_frozen_redis_answers_503_within_its_timeouts_and_recovers(
    drill_environ, private_redis, tmp_path, record_property
):
    with (
        serving(drill_environ(REDIS_URL=private_redis.url), tmp_path) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        account = register(http)
        pinned = [client for _ in range(4) for client in clients_per_worker(server.url)]
        for client in pinned:
            client.timeout = httpx.Timeout(30)  # the bound is asserted, not imposed
            assert answer(client.get(DASHBOARD, headers=account.headers)) == (200, "")
        probes = {
            "dashboard": lambda c: c.get(DASHBOARD, headers=account.headers),
            "login": lambda c: login(c, account.email),
            "plans": lambda c: c.get(f"{API}/plans"),
            "ready": readiness_after_a_change,
        }
        jobs = [(name, client) for client, name in zip(pinned, [*probes] * 2, strict=False)]

        private_redis.freeze()
        try:
            with ThreadPoolExecutor(len(jobs)) as pool:
                frozen = list(pool.map(lambda job: (job[0], outcome_of(lambda: probes[job[0]](job[1]))), jobs))
        finally:
            private_redis.thaw()
        recovery_s = wait_until(
            lambda: all(
                c.get(DASHBOARD, headers=account.headers).status_code == 200 for c in clients_per_worker(server.url)
            ),
            timeout=RECOVERY_BOUND_S,
            what="gated requests to succeed again on every worker",
        )

    expected = {
        "dashboard": (503, "ServiceUnavailable"),
        "login": (503, "ServiceUnavailable"),
        "plans": (200, ""),
        "ready": (503, "ServiceUnavailable"),
    }
    assert {(name, (o.status, o.error)) for name, o in frozen} == set(expected.items()), frozen
    assert max(o.elapsed for _, o in frozen) < FROZEN_ANSWER_BOUND_S, frozen
    numbers = {f"frozen_{name}_max_s": round(max(o.elapsed for n, o in frozen if n == name), 3) for name in probes}
    numbers["recovery_after_thaw_s"] = round(recovery_s, 3)
    report(record_property, "frozen redis", numbers)
