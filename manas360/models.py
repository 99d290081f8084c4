"""Tortoise ORM models: the PostgreSQL schema, which is the source of truth.

What the ORM cannot express (the case-insensitive partial unique index on email, partial
and composite hot indexes, materialized views, SQL functions) lives in hand-written SQL
migrations under migrations/models/.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model

ACCOUNT_ACTIVE, ACCOUNT_DISABLED, ACCOUNT_PENDING_DELETION = "active", "disabled", "pending_deletion"
ACCOUNT_STATUSES = (ACCOUNT_ACTIVE, ACCOUNT_DISABLED, ACCOUNT_PENDING_DELETION)
"""`UserAccount.status`: only an active account may log in, refresh or pass the guard; a
pending deletion waits ACCOUNT_DELETION_GRACE_S for `maintenance purge-deleted`."""


class Role(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=32, unique=True)
    privilege_level = fields.SmallIntField()
    description = fields.CharField(max_length=255, default="")

    class Meta:
        table = "roles"


class Permission(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    description = fields.CharField(max_length=255, default="")

    class Meta:
        table = "permissions"


class RolePermission(Model):
    id = fields.IntField(primary_key=True)
    role: fields.ForeignKeyRelation[Role] = fields.ForeignKeyField(
        "models.Role", related_name="role_permissions", on_delete=fields.CASCADE
    )
    permission: fields.ForeignKeyRelation[Permission] = fields.ForeignKeyField(
        "models.Permission", related_name="role_permissions", on_delete=fields.CASCADE
    )

    class Meta:
        table = "role_permissions"
        unique_together = (("role", "permission"),)


class SubscriptionPlan(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=32, unique=True)
    display_name = fields.CharField(max_length=64)
    tier = fields.SmallIntField(unique=True)
    price_cents = fields.IntField()

    class Meta:
        table = "subscription_plans"


class Feature(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    description = fields.CharField(max_length=255, default="")

    class Meta:
        table = "features"


class PlanFeature(Model):
    id = fields.IntField(primary_key=True)
    plan: fields.ForeignKeyRelation[SubscriptionPlan] = fields.ForeignKeyField(
        "models.SubscriptionPlan", related_name="plan_features", on_delete=fields.CASCADE
    )
    feature: fields.ForeignKeyRelation[Feature] = fields.ForeignKeyField(
        "models.Feature", related_name="plan_features", on_delete=fields.CASCADE
    )

    class Meta:
        table = "plan_features"
        unique_together = (("plan", "feature"),)


class UserAccount(Model):
    id = fields.UUIDField(primary_key=True)
    # Uniqueness is LOWER(email) among live rows: a partial index in the SQL migration.
    email = fields.CharField(max_length=320)
    password_hash = fields.CharField(max_length=128)
    display_name = fields.CharField(max_length=100, default="")
    role: fields.ForeignKeyRelation[Role] = fields.ForeignKeyField(
        "models.Role", related_name="users", on_delete=fields.RESTRICT
    )
    status = fields.CharField(max_length=16, default=ACCOUNT_ACTIVE)  # one of ACCOUNT_STATUSES
    # Set when the owner proved the address (the verification mail's link).
    email_verified_at = fields.DatetimeField(null=True)
    mfa_enabled = fields.BooleanField(default=False)
    locked_until = fields.DatetimeField(null=True)
    # Access tokens issued before this instant are dead (logout-all, password change, admin
    # revoke). Kept here so a Redis flush cannot bring them back.
    tokens_valid_after = fields.DatetimeField(null=True)
    last_login_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "user_accounts"


class UserSubscription(Model):
    id = fields.UUIDField(primary_key=True)
    user: fields.ForeignKeyRelation[UserAccount] = fields.ForeignKeyField(
        "models.UserAccount", related_name="subscriptions", on_delete=fields.CASCADE
    )
    plan: fields.ForeignKeyRelation[SubscriptionPlan] = fields.ForeignKeyField(
        "models.SubscriptionPlan", related_name="subscriptions", on_delete=fields.RESTRICT
    )
    status = fields.CharField(max_length=16, default="active")  # active | cancelled | expired
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "user_subscriptions"


class Session(Model):
    id = fields.UUIDField(primary_key=True)
    user: fields.ForeignKeyRelation[UserAccount] = fields.ForeignKeyField(
        "models.UserAccount", related_name="sessions", on_delete=fields.CASCADE
    )
    ip = fields.CharField(max_length=64, default="")
    user_agent = fields.CharField(max_length=512, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    revoke_reason = fields.CharField(max_length=32, null=True)

    class Meta:
        table = "sessions"


class Token(Model):
    """A refresh token, stored only as its SHA-256; rotation chains form a family per session."""

    id = fields.UUIDField(primary_key=True)
    session: fields.ForeignKeyRelation[Session] = fields.ForeignKeyField(
        "models.Session", related_name="tokens", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[UserAccount] = fields.ForeignKeyField(
        "models.UserAccount", related_name="tokens", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    parent: fields.ForeignKeyNullableRelation[Token] = fields.ForeignKeyField(
        "models.Token", related_name="children", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    rotated_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "tokens"


class RevokedAccessToken(Model):
    jti = fields.UUIDField(primary_key=True)
    user: fields.ForeignKeyRelation[UserAccount] = fields.ForeignKeyField(
        "models.UserAccount", related_name="revoked_access_tokens", on_delete=fields.CASCADE
    )
    session_id = fields.UUIDField(null=True)
    reason = fields.CharField(max_length=32, default="")
    revoked_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "revoked_access_tokens"


class LoginAttempt(Model):
    id = fields.BigIntField(primary_key=True)
    email = fields.CharField(max_length=320)
    user: fields.ForeignKeyNullableRelation[UserAccount] = fields.ForeignKeyField(
        "models.UserAccount", related_name="login_attempts", null=True, on_delete=fields.SET_NULL
    )
    success = fields.BooleanField()
    reason = fields.CharField(max_length=32, default="")
    ip = fields.CharField(max_length=64, default="")
    user_agent = fields.CharField(max_length=512, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "login_attempts"


class RateLimitLog(Model):
    """Blocked requests, aggregated: one row per (policy, key, window), with a counter."""

    id = fields.BigIntField(primary_key=True)
    policy = fields.CharField(max_length=32)
    key = fields.CharField(max_length=200)
    window_start = fields.DatetimeField()
    blocked_count = fields.IntField(default=0)
    first_blocked_at = fields.DatetimeField(auto_now_add=True)
    last_blocked_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "rate_limit_logs"
        unique_together = (("policy", "key", "window_start"),)


class AuditLog(Model):
    id = fields.BigIntField(primary_key=True)
    actor_id = fields.UUIDField(null=True)
    target_user_id = fields.UUIDField(null=True)
    action = fields.CharField(max_length=64)
    before: fields.JSONField[dict[str, Any] | None] = fields.JSONField(null=True)
    after: fields.JSONField[dict[str, Any] | None] = fields.JSONField(null=True)
    ip = fields.CharField(max_length=64, default="")
    request_id = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "audit_logs"


class AuditLogArchive(Model):
    """Audit rows older than the retention period, moved here by `maintenance archive-audit`."""

    id = fields.BigIntField(primary_key=True)
    actor_id = fields.UUIDField(null=True)
    target_user_id = fields.UUIDField(null=True)
    action = fields.CharField(max_length=64)
    before: fields.JSONField[dict[str, Any] | None] = fields.JSONField(null=True)
    after: fields.JSONField[dict[str, Any] | None] = fields.JSONField(null=True)
    ip = fields.CharField(max_length=64, default="")
    request_id = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField()
    archived_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "audit_logs_archive"
