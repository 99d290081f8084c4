"""Security events: each one voids every outstanding one-time link of the account (reset,
verification, mfa_token) in the transaction of the change, revokes the sessions it must, and
tells the owner by mail. One table over every event, with the links read from real mail."""

from __future__ import annotations

import pytest

from tests.auth.mfa_helpers import code_at, mfa_token, step_up, verify
from tests.fixtures.accounts import API, PASSWORD, Account, bearer, login, register
from tests.fixtures.gates import eventually
from tests.fixtures.smtp import body_of, token_in

NEW_PASSWORD = "a brand new passphrase"


def _subjects(smtp, email):
    return [m["Subject"] for m in smtp.inbox.to(email)]


async def _latest_link(smtp, email: str, subject: str, nth: int) -> str:
    await eventually(lambda: _subjects(smtp, email).count(subject) >= nth, what=f"{subject!r} #{nth}")
    return token_in([m for m in smtp.inbox.to(email) if m["Subject"] == subject][nth - 1])


class Owner:
    """An account with MFA on (aal-2 session), plus live links: a reset link, a verification
    link (the address left unverified) and an mfa_token."""

    def __init__(self, account: Account, secret: str, recovery: list[str]) -> None:
        self.account, self.secret, self.recovery = account, secret, recovery
        self.offset = -1

    def code(self) -> str:
        self.offset += 1
        return code_at(self.secret, self.offset)


async def _owner(client, smtp, *, mfa: bool) -> tuple[Owner, dict[str, str]]:
    account = await register(client)
    owner = Owner(account, "", [])
    verifications = 1
    if mfa:
        setup = await client.post(f"{API}/auth/mfa/totp/setup", headers=account.headers)
        owner.secret = setup.json()["secret"]
        confirmed = await client.post(
            f"{API}/auth/mfa/totp/confirm", headers=account.headers, json={"code": owner.code()}
        )
        owner.recovery = confirmed.json()["recovery_codes"]
        await step_up(client, account, code=owner.recovery.pop())
        # Turning MFA on voided the registration's link: the owner asks for another.
        assert (await client.post(f"{API}/auth/verify-email/resend", json={"email": account.email})).status_code == 202
        verifications = 2
    links = {"verification": await _latest_link(smtp, account.email, "Confirm your email address", verifications)}
    assert (await client.post(f"{API}/auth/password-reset", json={"email": account.email})).status_code == 202
    links["reset"] = await _latest_link(smtp, account.email, "Reset your MANAS360 password", 1)
    if mfa:
        links["mfa_token"] = await mfa_token(client, account)
    return owner, links


async def _password_change(client, owner: Owner, admin):
    return await client.post(
        f"{API}/auth/password",
        headers=owner.account.headers,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )


async def _logout_all(client, owner, admin):
    return await client.post(f"{API}/auth/logout-all", headers=owner.account.headers)


async def _admin_revoke(client, owner, admin):
    return await client.post(f"{API}/admin/users/{owner.account.id}/revoke-sessions", headers=admin)


async def _admin_disable(client, owner, admin):
    url = f"{API}/admin/users/{owner.account.id}/status"
    disabled = await client.put(url, headers=admin, json={"status": "disabled"})
    assert disabled.status_code == 200
    return await client.put(url, headers=admin, json={"status": "active"})  # back, links still dead


async def _admin_mfa_reset(client, owner, admin):
    return await client.post(f"{API}/admin/users/{owner.account.id}/mfa/reset", headers=admin)


async def _mfa_on(client, owner, admin):
    setup = await client.post(f"{API}/auth/mfa/totp/setup", headers=owner.account.headers)
    owner.secret = setup.json()["secret"]
    return await client.post(f"{API}/auth/mfa/totp/confirm", headers=owner.account.headers, json={"code": owner.code()})


async def _mfa_off(client, owner, admin):
    return await client.request(
        "DELETE", f"{API}/auth/mfa/totp", headers=owner.account.headers, json={"code": owner.code()}
    )


async def _new_recovery_codes(client, owner, admin):
    return await client.post(
        f"{API}/auth/mfa/recovery-codes", headers=owner.account.headers, json={"code": owner.code()}
    )


# event, what it does, MFA on before it, whether the caller's session survives, the notice's words
EVENTS = [
    ("password change", _password_change, False, False, "was changed"),
    ("logout-all", _logout_all, False, False, None),
    ("admin revoke", _admin_revoke, True, False, None),
    ("admin disable", _admin_disable, True, False, None),
    ("admin MFA reset", _admin_mfa_reset, True, False, "administrator turned two-step sign-in off"),
    ("MFA on", _mfa_on, False, True, "was turned on"),
    ("MFA off", _mfa_off, True, True, "was turned off"),
    ("new recovery codes", _new_recovery_codes, True, True, "New recovery codes"),
]


@pytest.mark.parametrize(("event", "act", "mfa", "caller_survives", "notice"), EVENTS, ids=[row[0] for row in EVENTS])
async def test_a_security_event_voids_every_outstanding_link_and_revokes_what_it_must(
    mail_client, client, smtp, pg, superadmin_headers, event, act, mfa, caller_survives, notice
):
    owner, links = await _owner(mail_client, smtp, mfa=mfa)
    account = owner.account
    other = await login(mail_client, account) if not mfa else None
    for session in filter(None, (account, other)):  # warm caches: Redis must hear of every revocation
        assert (await mail_client.get(f"{API}/me", headers=session.headers)).status_code == 200
    before = len(smtp.inbox.to(account.email))
    done = await act(mail_client, owner, superadmin_headers)
    assert done.status_code in (200, 204), done.text
    # Every outstanding one-time link is dead, whoever holds it.
    reset = await mail_client.post(
        f"{API}/auth/password-reset/confirm", json={"token": links["reset"], "new_password": "the attacker's password"}
    )
    assert (reset.status_code, reset.json()["error"]) == (401, "InvalidToken")
    verified = await mail_client.post(f"{API}/auth/verify-email", json={"token": links["verification"]})
    assert (verified.status_code, verified.json()["error"]) == (401, "InvalidToken")
    if "mfa_token" in links:
        pending = await verify(mail_client, links["mfa_token"], owner.recovery[0])
        assert (pending.status_code, pending.json()["error"]) == (401, "InvalidToken")
    # Sessions: all, or all but the one that made the change.
    me = await mail_client.get(f"{API}/me", headers=account.headers)
    assert (me.status_code == 200) is caller_survives, me.text
    if other is not None:
        other_me = await mail_client.get(f"{API}/me", headers=other.headers)
        assert (other_me.status_code, other_me.json()["error"]) == (401, "TokenRevoked")
    # The owner is told, with time, address and device, and nothing but "account security" in the subject.
    if notice is None:
        return
    await eventually(lambda: len(smtp.inbox.to(account.email)) > before, what="the notice")
    told = [m for m in smtp.inbox.to(account.email)[before:] if m["Subject"] == "Account security"]
    assert len(told) == 1 and notice in body_of(told[0])
    assert "When: " in body_of(told[0]) and "From: " in body_of(told[0]) and "#token=" not in body_of(told[0])


async def test_a_confirmed_reset_voids_the_other_links_and_mfa_tokens(mail_client, smtp, pg):
    owner, links = await _owner(mail_client, smtp, mfa=True)
    # A proven address (else the reset is the first proof and removes the TOTP, see the reset suite).
    await pg.execute("UPDATE user_accounts SET email_verified_at = now() WHERE id = $1", owner.account.id)
    assert (
        await mail_client.post(f"{API}/auth/password-reset", json={"email": owner.account.email})
    ).status_code == 202
    second = await _latest_link(smtp, owner.account.email, "Reset your MANAS360 password", 2)
    confirmed = await mail_client.post(
        f"{API}/auth/password-reset/confirm", json={"token": second, "new_password": NEW_PASSWORD, "code": owner.code()}
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["user"]["mfa_enabled"] is True
    reset = await mail_client.post(
        f"{API}/auth/password-reset/confirm",
        json={"token": links["reset"], "new_password": "the attacker's password", "code": owner.code()},
    )
    assert (reset.status_code, reset.json()["error"]) == (401, "InvalidToken")
    pending = await verify(mail_client, links["mfa_token"], owner.recovery[0])
    assert (pending.status_code, pending.json()["error"]) == (401, "InvalidToken")
    assert (await mail_client.get(f"{API}/me", headers=bearer(confirmed.json()["access_token"]))).status_code == 200
