"""The whole service on a three-master Redis Cluster: sign-up to revocation, the gated
hot path, and health, with nothing but REDIS_URL changed."""

from __future__ import annotations

from manas360.store.routed import RoutedPipelinedRedis
from tests.fixtures.accounts import API, bearer, login, register


async def test_register_login_logout_and_gated_reads_on_a_cluster(cluster_app, cluster_client):
    store = cluster_app.ctx.deps.store
    assert store.cluster and isinstance(store.fast, RoutedPipelinedRedis)
    account = await register(cluster_client)
    session = await login(cluster_client, account)
    me = await cluster_client.get(f"{API}/me", headers=session.headers)
    assert me.status_code == 200 and me.json()["id"] == account.id
    # The request's cache miss wrote the user's context to the cluster.
    assert await store.redis.exists(store.keys.user_context(account.id)) == 1

    assert (await cluster_client.post(f"{API}/auth/logout", headers=session.headers)).status_code == 204
    revoked = await cluster_client.get(f"{API}/me", headers=session.headers)
    assert (revoked.status_code, revoked.json()["error"]) == (401, "TokenRevoked")

    fresh = await login(cluster_client, account)
    dashboard = await cluster_client.get(f"{API}/dashboard", headers=bearer(fresh.pair["access_token"]))
    assert dashboard.status_code == 200 and dashboard.json()["user_id"] == account.id


async def test_health_pings_every_primary_and_reports_the_cluster_pool(cluster_client):
    ready = await cluster_client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["redis"] == "ok"
    report = (await cluster_client.get("/health")).json()
    assert report["status"] == "ok" and report["pool"]["redis"]["nodes"] == 3
