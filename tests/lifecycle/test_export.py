"""GET /me/export, held against the database catalog: every table/column that refers to a user
(foreign keys to user_accounts and user-id columns) that holds a row about the caller must be
in the export, and no hash or secret may be; other people appear by role; 3 a day."""

from __future__ import annotations

import json
import uuid

import asyncpg

from manas360.queries.ops import purge as purge_queries
from tests.auth.mfa_helpers import enable
from tests.fixtures.accounts import API, PASSWORD, register, unique_email

SECRET_COLUMNS = (
    "password_hash",
    "token_hash",
    "code_hash",
    "secret_sealed",
    "payload_sealed",
    "body",
    "confirm_hash",
    "cancel_hash",
    "deletion_cancel_hash",
)


async def test_the_export_holds_every_table_about_the_caller_and_no_secret(client, pg, database, superadmin_headers):
    name = f"Exported {uuid.uuid4().hex[:8]}"
    account = await register(client, display_name=name)
    await client.post(f"{API}/auth/login", json={"email": account.email, "password": "wrong wrong wrong"})
    await client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
    await client.post(f"{API}/auth/password-reset", json={"email": account.email})
    for path, body in (("role", {"role": "subscriber"}), ("subscription", {"plan": "premium"})):
        r = await client.put(f"{API}/admin/users/{account.id}/{path}", json=body, headers=superadmin_headers)
        assert r.status_code == 200, r.text
    await enable(client, account)
    mfa = await client.post(f"{API}/auth/login", json={"email": account.email, "password": PASSWORD})
    assert mfa.status_code == 403  # an mfa_token row
    assert (
        await client.post(f"{API}/me/email", headers=account.headers, json={"new_email": unique_email()})
    ).status_code == 202
    # Rows no API call of a test makes: a webhook counter, a blocked-request log, an archived
    # audit entry, a per-source lock.
    await pg.execute("INSERT INTO webhook_sequences (user_id, seq) VALUES ($1, 4)", uuid.UUID(account.id))
    await pg.execute(
        "INSERT INTO rate_limit_logs (policy, key, window_start, blocked_count) VALUES ('api', $1, now(), 2)",
        f"u:{account.id}",
    )
    await pg.execute(
        "INSERT INTO audit_logs_archive (actor_id, target_user_id, action, created_at) VALUES (NULL, $1, 'old', now())",
        uuid.UUID(account.id),
    )
    await pg.execute(
        "INSERT INTO account_source_locks (user_id, source, locked_until) VALUES ($1, '198.51.100.7', now())",
        uuid.UUID(account.id),
    )
    await pg.execute(
        "INSERT INTO revoked_access_tokens (jti, user_id, reason, expires_at) VALUES ($1, $2, 'x', now())",
        uuid.uuid4(),
        uuid.UUID(account.id),
    )

    response = await client.get(f"{API}/me/export", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].startswith("attachment;")
    document = response.json()
    records = document["records"]

    conn = await asyncpg.connect(database.replace("postgres://", "postgresql://", 1))
    try:
        columns = await purge_queries.columns_referencing_users(conn=conn)
    finally:
        await conn.close()
    missing = []
    for table, column in columns:
        held = await pg.fetchval(f'SELECT count(*) FROM "{table}" WHERE "{column}" = $1', uuid.UUID(account.id))
        if held and not records.get(table):
            missing.append((table, column, held))
    assert not missing, "tables holding records about the caller that the export omits"
    assert records["user_accounts"][0]["display_name"] == name

    text = json.dumps(document)
    keys = {key for rows in records.values() for row in rows for key in row}
    assert not keys & set(SECRET_COLUMNS)
    secrets = [await pg.fetchval("SELECT password_hash FROM user_accounts WHERE id = $1", account.id)]
    secrets += [
        r["token_hash"] for r in await pg.fetch("SELECT token_hash FROM account_tokens WHERE user_id = $1", account.id)
    ]
    secrets += [r["token_hash"] for r in await pg.fetch("SELECT token_hash FROM tokens WHERE user_id = $1", account.id)]
    assert not [s for s in secrets if s in text]
    # Other people by role, never by identity.
    admin_id = await pg.fetchval("SELECT id FROM user_accounts WHERE email = 'root-shared@example.com'")
    assert str(admin_id) not in text
    assert any(row["actor"] == "superadmin" for row in records["audit_logs"])


async def test_three_exports_a_day_each_mailed(client, pg):
    account = await register(client)
    answers = [await client.get(f"{API}/me/export", headers=account.headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["retry_after"] > 3600
    mailed = await pg.fetchval(
        "SELECT count(*) FROM outbox WHERE user_id = $1 AND kind = 'security_notice'", account.id
    )
    assert mailed == 3


async def test_the_export_needs_a_fresh_credential(client, pg):
    account = await register(client)
    await pg.execute("UPDATE sessions SET auth_time = auth_time - interval '1 hour' WHERE user_id = $1", account.id)
    stale = await client.post(f"{API}/auth/refresh", json={"refresh_token": account.refresh_token})
    response = await client.get(f"{API}/me/export", headers={"authorization": f"Bearer {stale.json()['access_token']}"})
    assert (response.status_code, response.json()["error"]) == (403, "ReauthenticationRequired")
