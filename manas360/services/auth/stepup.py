"""Step-up: sensitive changes need a credential presented recently in this session.

MFA setup, confirm and disable, recovery-code regeneration, passkey registration and
removal (and, as they arrive, an email change, the data export, deleting the account) require
the access token's `auth_time` within REAUTH_MAX_AGE_S and, when the account has MFA on,
`aal` 2; otherwise 403 ReauthenticationRequired (with `max_age` and `required_aal`) and
nothing changes. Both values come from the verified token: no extra round trip. The age is
measured on the database's clock, the clock that stamped `auth_time`.
POST /auth/reauthenticate (manas360.services.auth.reauthenticate, or with a passkey
manas360.services.auth.passkey_login) gives the session a fresh `auth_time`.
"""

from __future__ import annotations

from datetime import datetime

from manas360.clock import to_ms
from manas360.errors import ReauthenticationRequired
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
