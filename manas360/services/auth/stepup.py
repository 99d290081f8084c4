"""Step-up: sensitive changes need a credential presented recently in this session.

MFA setup, confirm and disable, recovery-code regeneration, passkey registration and
removal an email change, the data export and deleting the account require
the access token's `auth_time` within REAUTH_MAX_AGE_S and, when the account has MFA on,
`aal` 2; otherwise 403 ReauthenticationRequired (with `max_age` and `required_aal`) and
nothing changes. Both values come from the verified token: no extra round trip. The age is
measured on the database's clock, the clock that stamped `auth_time`.
POST /auth/reauthenticate (manas360.services.auth.reauthenticate, or with a passkey
manas360.services.auth.passkey_login) gives the session a fresh `auth_time`.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

from manas360.clock import db_now, to_ms
from manas360.errors import NotFound, ReauthenticationRequired
from manas360.queries.accounts import users as user_queries
from manas360.queries.accounts.users import Credentials
from manas360.security.jwt import VerifiedToken
from manas360.settings import Settings


def is_fresh(*, settings: Settings, principal: VerifiedToken, now: datetime, max_age_s: int | None = None) -> bool:
    """Whether the token's credential was presented within `max_age_s` (REAUTH_MAX_AGE_S) of `now`."""
    limit_s = settings.reauth_max_age_s if max_age_s is None else max_age_s
    return to_ms(now) - principal.auth_time * 1000 <= limit_s * 1000


def require_recent(*, settings: Settings, principal: VerifiedToken, mfa_enabled: bool, now: datetime) -> None:
    """ReauthenticationRequired unless the caller proved who they are recently enough, at
    `aal` 2 when the account has MFA on."""
    required_aal = 2 if mfa_enabled else 1
    if principal.aal < required_aal or not is_fresh(settings=settings, principal=principal, now=now):
        raise ReauthenticationRequired(max_age=settings.reauth_max_age_s, required_aal=required_aal)


class SteppedUp(NamedTuple):
    account: Credentials
    """The caller's credentials, read under their row lock."""
    now: datetime
    """The database's clock, which judged the step-up."""


async def lock_caller(
    conn: BaseDBAsyncClient, *, settings: Settings, principal: VerifiedToken, source: str = ""
) -> SteppedUp:
    """The first step of every step-up operation, in its transaction: lock the caller's row
    (first in the lock order), read their credentials (with `source`'s lock state when given)
    and require a recent credential (`require_recent`); NotFound when the account is gone."""
    account = await user_queries.lock_credentials(
        conn=conn,
        user_id=principal.user_id,
        source=source,
        known_source_s=settings.lockout_known_source_s if source else 0,
    )
    if account is None:
        raise NotFound()
    now = await db_now(conn)
    require_recent(settings=settings, principal=principal, mfa_enabled=account.mfa_enabled, now=now)
    return SteppedUp(account=account, now=now)
