"""No reset or verification token appears in any log line (or audit entry) while the flows
run with SMTP configured; only the development console backend prints mail."""

from __future__ import annotations

from loguru import logger

from tests.fixtures.accounts import API, register
from tests.fixtures.smtp import token_in


async def test_no_token_is_logged_during_the_flows(mail_client, smtp, pg):
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message) + repr(message.record["extra"])), level="TRACE")
    try:
        account = await register(mail_client)
        verification = token_in((await smtp.wait_for(account.email))[0])
        assert (await mail_client.post(f"{API}/auth/verify-email/resend", headers=account.headers)).status_code == 202
        resent = token_in((await smtp.wait_for(account.email, count=2))[1])
        assert (await mail_client.post(f"{API}/auth/verify-email", json={"token": resent})).status_code == 200
        assert (await mail_client.post(f"{API}/auth/verify-email", json={"token": verification})).status_code == 401
        assert (await mail_client.post(f"{API}/auth/password-reset", json={"email": account.email})).status_code == 202
        reset = token_in((await smtp.wait_for(account.email, count=3))[2])
        confirm = {"token": reset, "new_password": "a brand new passphrase"}
        assert (await mail_client.post(f"{API}/auth/password-reset/confirm", json=confirm)).status_code == 200
        assert (await mail_client.post(f"{API}/auth/password-reset/confirm", json=confirm)).status_code == 401
    finally:
        logger.remove(sink)
    assert any("delivered" in line for line in lines)  # the sender's lines were captured
    audit = " ".join(
        str(dict(r)) for r in await pg.fetch("SELECT * FROM audit_logs WHERE target_user_id = $1", account.id)
    )
    for token in (verification, resent, reset):
        assert not [line for line in lines if token in line]
        assert token not in audit
