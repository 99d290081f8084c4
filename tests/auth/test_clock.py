"""Validity times come from PostgreSQL's clock, not each worker's: a worker whose clock is
behind the database's must not mint tokens that are born revoked."""

from __future__ import annotations

from tests.fixtures.accounts import API, PASSWORD, bearer, login


async def _forget_cached_user(redis_raw, settings, user_id: str) -> None:
    keys = [key async for key in redis_raw.scan_iter(match=f"{settings.redis_prefix}{{u:{user_id}}}*")]
    if keys:
        await redis_raw.delete(*keys)


async def test_a_login_on_a_worker_behind_the_database_clock_is_not_born_revoked(
    client, pg, redis_raw, settings, account
):
    # A later epoch, as a revocation stamped by a clock 3 s ahead of this worker's leaves it.
    await pg.execute(
        "UPDATE user_accounts SET tokens_valid_after = now() + interval '3 seconds' WHERE id = $1", account.id
    )
    await _forget_cached_user(redis_raw, settings, account.id)
    fresh = await login(client, account)
    me = await client.get(f"{API}/me", headers=fresh.headers)
    assert me.status_code == 200, me.text
    assert (await client.get(f"{API}/me", headers=account.headers)).json()["error"] == "TokenRevoked"


async def test_a_refresh_on_a_worker_behind_the_database_clock_is_not_born_revoked(
    client, pg, redis_raw, settings, account
):
    await pg.execute(
        "UPDATE user_accounts SET tokens_valid_after = now() + interval '3 seconds' WHERE id = $1", account.id
    )
    await _forget_cached_user(redis_raw, settings, account.id)
    response = await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})
    assert response.status_code == 200
    me = await client.get(f"{API}/me", headers=bearer(response.json()["access_token"]))
    assert me.status_code == 200, me.text


async def test_sessions_and_the_epoch_are_stamped_by_the_database_clock(client, pg, account):
    changed = await client.post(
        f"{API}/auth/password",
        headers=account.headers,
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
    )
    assert changed.status_code == 200
    row = await pg.fetchrow(
        "SELECT u.tokens_valid_after, s.created_at, s.expires_at, now() AS db_now FROM user_accounts u "
        "JOIN sessions s ON s.user_id = u.id AND s.revoked_at IS NULL WHERE u.id = $1",
        account.id,
    )
    assert row["tokens_valid_after"] <= row["created_at"] <= row["db_now"]
    assert row["tokens_valid_after"].microsecond % 1000 == 0  # whole ms, the tokens' precision
    assert (row["expires_at"] - row["created_at"]).total_seconds() == 604800
