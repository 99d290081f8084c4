"""On a real two-worker server, every kind of change applies to the very next request on
both workers: role, plan, role permissions, plan features, subscription expiry."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from manas360.services.ops.seeding import seed_superadmin
from tests.fixtures.accounts import API, PASSWORD, unique_email
from tests.fixtures.server import clients_per_worker, start_server

pytestmark = pytest.mark.slow
ROOT = "root-workers@example.com"


@pytest.fixture(scope="module")
def server(environ, database, tmp_path_factory):
    process = start_server(environ, workers=2, tmp_dir=tmp_path_factory.mktemp("authz-server"))
    yield process
    process.stop()


def _token(url: str, email: str, *, register: bool) -> dict[str, str]:
    path = "register" if register else "login"
    response = httpx.post(f"{url}{API}/auth/{path}", json={"email": email, "password": PASSWORD})
    assert response.status_code in (200, 201), response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}, response.json()["user"]["id"]


@pytest.fixture(scope="module")
def pinned(server):
    clients = clients_per_worker(server.url)
    yield clients
    for client in clients:
        client.close()


def _statuses(pinned: list[httpx.Client], path: str, headers) -> set[int]:
    """The status of `path` on each worker, asked on its own pinned connection."""
    assert len({client.get("/health").json()["pid"] for client in pinned}) == 2  # still one per worker
    return {client.get(path, headers=headers).status_code for client in pinned}


@pytest.fixture
async def root_headers(app, db, server):
    await seed_superadmin(
        db=app.ctx.deps.db, settings=app.ctx.deps.settings, store=app.ctx.deps.store, email=ROOT, password=PASSWORD
    )
    headers, _ = _token(server.url, ROOT, register=False)
    return headers


def test_every_kind_of_change_applies_on_both_workers(server, pinned, root_headers):
    url = server.url
    headers, user_id = _token(url, unique_email("workers"), register=True)
    admin = httpx.Client(base_url=url + API + "/admin", headers=root_headers)

    assert _statuses(pinned, f"{API}/dashboard", headers) == {200}
    assert admin.put(f"/users/{user_id}/role", json={"role": "guest"}).status_code == 200
    assert _statuses(pinned, f"{API}/dashboard", headers) == {403}
    assert admin.put(f"/users/{user_id}/role", json={"role": "user"}).status_code == 200
    assert _statuses(pinned, f"{API}/dashboard", headers) == {200}

    assert _statuses(pinned, f"{API}/premium/dashboard", headers) == {403}
    assert admin.put(f"/users/{user_id}/subscription", json={"plan": "premium"}).status_code == 200
    assert _statuses(pinned, f"{API}/premium/dashboard", headers) == {200}

    permissions = next(r for r in admin.get("/roles").json()["items"] if r["name"] == "user")["permissions"]
    try:
        assert (
            admin.put(
                "/roles/user/permissions", json={"permissions": [p for p in permissions if p != "dashboard.read"]}
            ).status_code
            == 200
        )
        assert _statuses(pinned, f"{API}/dashboard", headers) == {403}
    finally:
        admin.put("/roles/user/permissions", json={"permissions": permissions})
    assert _statuses(pinned, f"{API}/dashboard", headers) == {200}

    features = next(p for p in httpx.get(url + API + "/plans").json()["items"] if p["name"] == "premium")["features"]
    try:
        assert (
            admin.put(
                "/plans/premium/features", json={"features": [f for f in features if f != "premium_dashboard"]}
            ).status_code
            == 200
        )
        assert _statuses(pinned, f"{API}/premium/dashboard", headers) == {403}
    finally:
        admin.put("/plans/premium/features", json={"features": features})
    assert _statuses(pinned, f"{API}/premium/dashboard", headers) == {200}

    ends_at = datetime.now(UTC) + timedelta(seconds=1)
    assert (
        admin.put(
            f"/users/{user_id}/subscription", json={"plan": "premium", "ends_at": ends_at.isoformat()}
        ).status_code
        == 200
    )
    while datetime.now(UTC) < ends_at:
        time.sleep(0.05)
    assert _statuses(pinned, f"{API}/premium/dashboard", headers) == {403}
