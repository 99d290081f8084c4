"""Every Redis key name, built in one place.

Per-user keys carry the hash tag `{u:<id>}` so a script touching several of them hits one
slot (and works unchanged on Redis Cluster); per-IP keys carry `{ip:<addr>}`; per-account
login keys carry `{login:<sha256(email)>}`. Everything lives under the deployment prefix.
"""

from __future__ import annotations

import hashlib


class Keys:
    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    # per user ------------------------------------------------------------------------
    def user_tag(self, user_id: str) -> str:
        return f"{self.prefix}{{u:{user_id}}}"

    def user_context(self, user_id: str) -> str:
        return f"{self.user_tag(user_id)}:ctx"

    def user_generation(self, user_id: str) -> str:
        """Bumped by every invalidation of the user's context; a fill must find it unchanged."""
        return f"{self.user_tag(user_id)}:gen"

    def user_epoch(self, user_id: str) -> str:
        return f"{self.user_tag(user_id)}:epoch"

    def revoked_jti(self, user_id: str, jti: str) -> str:
        return f"{self.user_tag(user_id)}:rev:{jti}"

    def revoked_session(self, user_id: str, session_id: str) -> str:
        return f"{self.user_tag(user_id)}:srev:{session_id}"

    def revocations_loaded(self, user_id: str) -> str:
        """Present while the user's revocations in Redis are a complete copy of PostgreSQL's."""
        return f"{self.user_tag(user_id)}:revloaded"

    def user_rate(self, user_id: str, policy: str) -> str:
        return f"{self.user_tag(user_id)}:rl:{policy}"

    # per client address ----------------------------------------------------------------
    def ip_rate(self, ip: str, policy: str, route: str = "") -> str:
        suffix = f":{route}" if route else ""
        return f"{self.prefix}{{ip:{ip}}}:rl:{policy}{suffix}"

    # per login identity (email, known or not) -------------------------------------------
    def login_tag(self, email: str) -> str:
        digest = hashlib.sha256(email.encode("utf-8")).hexdigest()
        return f"{self.prefix}{{login:{digest}}}"

    def login_failures(self, email: str) -> str:
        return f"{self.login_tag(email)}:fail"

    def login_lock(self, email: str) -> str:
        return f"{self.login_tag(email)}:lock"

    def login_pending(self, email: str) -> str:
        """Password checks in flight for the identity (reservations), see store/lockout.py."""
        return f"{self.login_tag(email)}:pending"

    def login_source(self, email: str, source: str) -> str:
        """The stem of one source's failures, lock and pending checks for the identity (same tag)."""
        return f"{self.login_tag(email)}:src:{source}"

    def login_cleared(self, email: str) -> str:
        """When the identity's locks were last cleared (a reset, an unlock): older ones do not count."""
        return f"{self.login_tag(email)}:cleared"

    # catalog (reference data) ---------------------------------------------------------------------
    def catalog_version(self) -> str:
        return f"{self.prefix}ref:version"

    def catalog_channel(self) -> str:
        return f"{self.prefix}ref:changed"
