"""Wrong second-factor codes count toward the account's lockout exactly like failed logins,
reserved before the code is looked at: concurrency never buys extra guesses."""

from __future__ import annotations

import asyncio

from manas360.services.auth import codes as mfa_service
from tests.auth.mfa_helpers import LOGIN, TOTP, enable, mfa_token, verify, wrong_code
from tests.fixtures.gates import eventually
from tests.fixtures.outbox import mail_bodies


async def test_concurrent_wrong_codes_buy_no_extra_guesses(client, pg, account, gate):
    """Eleven wrong codes and the right one at once, every check held until all twelve are in:
    only LOCKOUT_THRESHOLD checks may run; the rest are 423 before the code is looked at."""
    enabled = await enable(client, account)
    tokens = [await mfa_token(client, account) for _ in range(12)]
    check = gate(mfa_service, "check_code")
    codes = [wrong_code(enabled.secret)] * 11 + [enabled.code()]
    tasks = [asyncio.create_task(verify(client, token, code)) for token, code in zip(tokens, codes, strict=True)]
    await eventually(lambda: check.held + sum(task.done() for task in tasks) == 12, what="every verify placed")
    assert check.held == 5
    assert [task.result().status_code for task in tasks if task.done()] == [423] * 7
    check.open()
    statuses = [(await task).status_code for task in tasks]
    assert check.calls == 5
    assert statuses.count(423) == 7 and statuses.count(401) + statuses.count(200) == 5
    assert statuses.count(200) <= 1
    sessions = await pg.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", account.id)
    assert sessions == 1 + statuses.count(200)
    if statuses.count(401) == 5:  # the right code lost the race to the lock: locked, no session
        assert (
            await client.post(LOGIN, json={"email": account.email, "password": account.password})
        ).status_code == 423


async def test_twenty_concurrent_wrong_codes_lock_at_exactly_the_threshold(client, pg, account):
    enabled = await enable(client, account)
    tokens = [await mfa_token(client, account) for _ in range(20)]
    responses = await asyncio.gather(*[verify(client, token, wrong_code(enabled.secret)) for token in tokens])
    assert sorted(r.status_code for r in responses) == [401] * 5 + [423] * 15
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM account_source_locks WHERE user_id = $1 AND locked_until > now()", account.id
        )
        == 1
    )
    failures = await pg.fetchval(
        "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.mfa_failed'", account.id
    )
    assert failures == 5


async def test_fifth_wrong_code_locks_and_then_even_the_right_code_and_password_are_423(client, account):
    enabled = await enable(client, account)
    tokens = [await mfa_token(client, account) for _ in range(6)]
    statuses = [(await verify(client, token, wrong_code(enabled.secret))).json()["error"] for token in tokens[:5]]
    assert statuses == ["InvalidCredentials"] * 5
    locked = await verify(client, tokens[5], enabled.code())
    assert locked.status_code == 423 and locked.json()["retry_after"] > 800
    login = await client.post(LOGIN, json={"email": account.email, "password": account.password})
    assert login.status_code == 423


async def test_wrong_codes_and_wrong_passwords_share_one_count(client, account):
    enabled = await enable(client, account)
    for _ in range(3):
        response = await client.post(LOGIN, json={"email": account.email, "password": "definitely wrong"})
        assert response.status_code == 401
    token = await mfa_token(client, account)
    assert (await verify(client, token, wrong_code(enabled.secret))).status_code == 401
    assert (await verify(client, token, wrong_code(enabled.secret))).status_code == 401
    assert (await verify(client, token, enabled.code())).status_code == 423


async def test_wrong_codes_to_turn_mfa_off_count_toward_the_lockout(client, pg, account):
    enabled = await enable(client, account)
    for _ in range(5):
        response = await client.request(
            "DELETE", TOTP, headers=account.headers, json={"code": wrong_code(enabled.secret)}
        )
        assert (response.status_code, response.json()["error"]) == (401, "InvalidCredentials")
    refused = await client.request("DELETE", TOTP, headers=account.headers, json={"code": enabled.code()})
    assert refused.status_code == 423
    assert await pg.fetchval("SELECT mfa_enabled FROM user_accounts WHERE id = $1", account.id)


# -- an mfa_token dies after three wrong codes; wrong codes also count per account -------------


async def test_an_mfa_token_dies_at_its_third_wrong_code(client, account):
    enabled = await enable(client, account)
    token = await mfa_token(client, account)
    wrong = [(await verify(client, token, wrong_code(enabled.secret))).json()["error"] for _ in range(3)]
    assert wrong == ["InvalidCredentials"] * 3
    dead = await verify(client, token, enabled.code())
    assert (dead.status_code, dead.json()["error"]) == (401, "InvalidToken")


async def test_concurrent_codes_on_one_mfa_token_are_three_at_most(client, pg, account):
    enabled = await enable(client, account)
    token = await mfa_token(client, account)
    answers = await asyncio.gather(*[verify(client, token, wrong_code(enabled.secret)) for _ in range(6)])
    assert sorted(a.json()["error"] for a in answers) == ["InvalidCredentials"] * 3 + ["InvalidToken"] * 3
    assert await pg.fetchval("SELECT failures FROM mfa_tokens WHERE user_id = $1", account.id) == 3


async def _wrong_codes_from_many_sources(app, account, enabled, count: int) -> None:
    """`count` wrong codes, four per source (a fifth would lock that source), fresh tokens."""
    from tests.fixtures.app import client_for

    sent = 0
    for n in range(100):
        async with client_for(app, client_ip=f"198.18.{n // 250}.{n % 250 + 1}") as source:
            for _ in range(2):
                token = await mfa_token(source, account)
                for _ in range(2):
                    if sent == count:
                        return
                    answer = await verify(source, token, wrong_code(enabled.secret))
                    assert answer.json()["error"] == "InvalidCredentials", answer.text
                    sent += 1


async def test_ten_wrong_codes_in_a_row_mail_the_owner_once(app, client, pg, account, settings):
    enabled = await enable(client, account)
    await _wrong_codes_from_many_sources(app, account, enabled, 12)
    notices = [
        body
        for body in await mail_bodies(pg, settings, user_id=account.id, kind="security_notice")
        if "wrong two-step codes" in body
    ]
    assert len(notices) == 1 and "someone may know your password" in notices[0]
    assert await pg.fetchval("SELECT mfa_failures FROM user_accounts WHERE id = $1", account.id) == 12
    assert (await verify(client, await mfa_token(client, account), enabled.code())).status_code == 200
    assert await pg.fetchval("SELECT mfa_failures FROM user_accounts WHERE id = $1", account.id) == 0


async def test_at_the_code_ceiling_every_code_check_is_refused_until_an_admin_unlocks(
    app, client, pg, account, superadmin_headers
):
    enabled = await enable(client, account)
    await pg.execute("UPDATE user_accounts SET mfa_failures = 99 WHERE id = $1", account.id)  # 99 in a row so far
    await _wrong_codes_from_many_sources(app, account, enabled, 1)
    right = await verify(client, await mfa_token(client, account), enabled.code())
    assert (right.status_code, right.json()["error"]) == (423, "AccountLocked")
    off = await client.request("DELETE", TOTP, headers=account.headers, json={"code": enabled.recovery_codes[0]})
    assert off.status_code == 423  # every code check of the account, wherever it comes from
    unlocked = await client.post(f"/api/v1/admin/users/{account.id}/unlock", headers=superadmin_headers)
    assert unlocked.status_code == 204
    assert (await verify(client, await mfa_token(client, account), enabled.code())).status_code == 200


async def test_codes_with_spaces_and_dashes_are_the_same_code_and_cost_nothing(client, pg, account):
    enabled = await enable(client, account)
    code = enabled.code()
    dashed = f"{code[:3]}-{code[3:]}"
    assert (await verify(client, await mfa_token(client, account), dashed)).status_code == 200
    spaced = " ".join(enabled.code())
    assert (await verify(client, await mfa_token(client, account), spaced)).status_code == 200
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM audit_logs WHERE target_user_id = $1 AND action = 'auth.mfa_failed'", account.id
        )
        == 0
    )


async def test_recovery_codes_carry_at_least_60_bits(client, account):
    enabled = await enable(client, account)
    for code in enabled.recovery_codes:
        raw = code.replace("-", "")
        assert len(raw) * 5 >= 60 and set(raw) <= set("abcdefghijklmnopqrstuvwxyz234567")
