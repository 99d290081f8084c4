"""The response side of the contract: one pydantic model per JSON shape the API answers with.

Handlers build these from what the services return and render them (`manas360.http.responses`);
the OpenAPI document (`manas360.http.openapi`) takes its component schemas from the same classes,
so what is documented is what is sent. Every model forbids unknown fields, which the schema
states as `additionalProperties: false`: a field a handler adds without documenting it fails
validation (and the contract tests) instead of reaching clients unannounced.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, RootModel, WithJsonSchema

from manas360.http.pagination import CURSOR_PATTERN


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


# Times leave as ISO-8601 with an explicit UTC offset (`+00:00`), exactly as before models.
Timestamp = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
UserId = Annotated[str, Field(description="A user id (UUID)", examples=["5f0c6f4e-2b7a-4a53-9a51-9f8e0f2a1c3d"])]


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


USER_EXAMPLE: dict[str, Any] = {
    "id": "5f0c6f4e-2b7a-4a53-9a51-9f8e0f2a1c3d",
    "email": "asha@example.com",
    "display_name": "Asha",
    "role": "user",
    "privilege_level": 10,
    "plan": "free",
    "created_at": "2026-01-31T09:30:00.123456+00:00",
    "status": "active",
    "email_verified": False,
    "mfa_enabled": False,
}


class User(ApiModel):
    """An account as clients see it (`<User>`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [USER_EXAMPLE]})

    id: UserId
    email: str
    display_name: str
    role: str = Field(description="Role name: guest, user, subscriber, admin, superadmin or a newer one")
    privilege_level: int = Field(description="The role's level, 0..100")
    plan: str = Field(description="The plan of the active subscription; `free` when none is active")
    created_at: Timestamp
    status: Literal["active", "disabled", "pending_deletion"]
    email_verified: bool
    mfa_enabled: bool


class TokenPair(ApiModel):
    """A new access token (JWT, `Authorization: Bearer`) with its single-use refresh token."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJzdWIiOiI1ZjBj...",
                    "refresh_token": "q3Jx0mW8b1y6n0HkR2y7lG5c0dYfV3tO9sPzE4aUuBc",
                    "token_type": "Bearer",
                    "expires_in": 900,
                    "user": USER_EXAMPLE,
                }
            ]
        },
    )

    access_token: str
    refresh_token: str = Field(description="Opaque, single use: each refresh returns its successor")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    user: User


class TotpSetup(ApiModel):
    """A pending TOTP secret (RFC 6238: SHA-1, 6 digits, 30 s)."""

    secret: str = Field(description="The base32 secret, for typing into an authenticator app")
    otpauth_uri: str = Field(description="The same as an `otpauth://totp/...` URI")
    qr_svg: str = Field(description="That URI as a QR code, a standalone SVG document, for an app to scan")


class VerificationRequired(ApiModel):
    """Registered, with no session: REQUIRE_VERIFIED_EMAIL is on and the address is not proved yet."""

    model_config = ConfigDict(extra="forbid")

    user: User
    verification_required: Literal[True] = Field(description="Follow the link mailed to the address, then log in")


class Registration(RootModel[TokenPair | VerificationRequired]):
    """A token pair, or (with REQUIRE_VERIFIED_EMAIL) the user and `verification_required`."""


class RecoveryCodes(ApiModel):
    """MFA is on; the single-use recovery codes, shown only this once."""

    recovery_codes: list[str] = Field(min_length=10, max_length=10, description="Ten codes `xxxx-xxxx-xxxx-xxxx`")


class Subscription(ApiModel):
    plan: str
    status: str
    ends_at: Timestamp | None = Field(description="Open-ended when null")


class Me(User):
    """The caller: `<User>` with the permissions of their role, the features of their plan
    and their subscription."""

    model_config = ConfigDict(extra="forbid")

    permissions: list[str]
    features: list[str]
    subscription: Subscription


class AdminSubscription(Subscription):
    starts_at: Timestamp | None


class SourceLock(ApiModel):
    source: str
    until: Timestamp


class UserDetail(User):
    """A user as administrators see them: `<User>` with `locked_until` and `subscription`."""

    model_config = ConfigDict(extra="forbid")

    locked_until: Timestamp | None = Field(
        description="The end of the account-wide lock, else of the latest per-source lock; null when none"
    )
    locks: list[SourceLock] = Field(description="The per-source locks (a source: an IPv4 address or IPv6 prefix)")
    subscription: AdminSubscription


NextCursor = Annotated[
    str | None, Field(description="`cursor` of the next page; null on the last page", pattern=CURSOR_PATTERN)
]


class UserPage(ApiModel):
    items: list[User]
    next_cursor: NextCursor


class AuditEntry(ApiModel):
    id: int
    actor_id: str | None = Field(description="Who acted (a user id); null for the system")
    target_user_id: str | None = Field(description="The user acted on, if any")
    action: str
    before: Any = Field(description="The changed state before the action (JSON), if recorded")
    after: Any = Field(description="The changed state after the action (JSON), if recorded")
    ip: str | None
    request_id: str | None
    created_at: Timestamp


class AuditPage(ApiModel):
    items: list[AuditEntry]
    next_cursor: NextCursor


class Session(ApiModel):
    id: str = Field(description="The session id (UUID)")
    created_at: Timestamp
    last_used_at: Timestamp
    ip: str
    user_agent: str
    current: bool = Field(description="True for the session of the token that asked")


class SessionList(ApiModel):
    items: list[Session]


class Role(ApiModel):
    name: str
    privilege_level: int
    permissions: list[str]


class RoleList(ApiModel):
    items: list[Role]


class Plan(ApiModel):
    name: str
    display_name: str
    tier: int = Field(description="0 for free; higher tiers include every feature of the lower ones")
    price_cents: int = Field(description="Monthly price in cents")
    features: list[str]


class PlanList(ApiModel):
    items: list[Plan] = Field(description="Cheapest tier first")


class Dashboard(ApiModel):
    dashboard: Literal["standard", "premium"]
    user_id: UserId
    plan: str


class UserCounts(ApiModel):
    total: int
    by_role: dict[str, int]
    by_plan: dict[str, int]


class Activity(ApiModel):
    logins: int
    failed_logins: int
    lockouts: int


class Analytics(ApiModel):
    users: UserCounts
    last_24h: Activity


class Live(ApiModel):
    status: Literal["ok"]


class Ready(ApiModel):
    status: Literal["ok"]
    database: Literal["ok"]
    redis: Literal["ok"]


class Pools(ApiModel):
    database: dict[str, int]
    redis: dict[str, int]


class OutboxCounts(ApiModel):
    pending: int
    dead: int


class WebhookState(ApiModel):
    state: Literal["ok", "failing", "unconfigured"] = Field(
        description=(
            "This worker's webhook sender: `ok`, `failing` (its last delivery attempt failed; events wait and are "
            "retried) or `unconfigured` (no WEBHOOK_URL: no events are recorded)"
        )
    )
    pending: int | None = Field(
        None, description="Events waiting to be delivered (absent when the database did not answer)"
    )
    dead: int | None = Field(None, description="Events given up after WEBHOOK_MAX_AGE_S")


class Health(ApiModel):
    status: Literal["ok", "degraded"]
    database: str = Field(description="`ok`, `timeout` or `error: <kind>`")
    redis: str = Field(description="`ok`, `timeout` or `error: <kind>`")
    latency_ms: dict[str, float]
    pool: Pools
    uptime_s: float
    memory: dict[str, int]
    version: str
    pid: int
    mail: Literal["ok", "failing", "console", "unconfigured"] = Field(
        description=(
            "This worker's mail sender: `ok`, `failing` (its last delivery attempt failed; mail waits and is "
            "retried), `console` (development backend) or `unconfigured` (no SMTP_URL: mail waits). Never makes "
            "the service unready"
        )
    )
    outbox: OutboxCounts | None = Field(
        description=(
            "The outbox: rows waiting to be delivered, and dead letters (given up after OUTBOX_MAX_AGE_S); null "
            "when the database did not answer"
        )
    )
    webhooks: WebhookState


class PublicKey(BaseModel):
    """One public signing key as a JWK (RFC 7517): `kty`, `crv`, `x` (and `y` for EC), plus the
    fields below."""

    model_config = ConfigDict(extra="allow")
    kid: str = Field(description="The key id access tokens name in their `kid` header")
    alg: Literal["EdDSA", "ES256"] = Field(description="The only algorithm tokens of this key verify under")
    use: Literal["sig"]
    kty: str
    crv: str
    x: str


class Jwks(ApiModel):
    """The JWK Set of the public keys still accepted; empty with HS256 (the secret is never published)."""

    keys: list[PublicKey]


class Introspection(ApiModel):
    """RFC 7662: `{"active": false}` alone for anything but a live access token of an active account."""

    active: bool
    sub: str | None = Field(None, description="The user id")
    sid: str | None = Field(None, description="The session id")
    exp: int | float | None = None
    iat: int | float | None = None
    auth_time: int | None = Field(None, description="When the user last presented a credential (seconds)")
    amr: list[str] | None = Field(None, description="How: `pwd`, `otp`, `hwk`, `user`, `email`, ...")
    aal: int | None = Field(None, description="1, or 2 with a second factor or a user-verifying passkey")
    role: str | None = Field(None, description="The account's role now (not when the token was issued)")
    plan: str | None = Field(None, description="The account's effective plan now (free once a plan has ended)")
    permissions: list[str] | None = Field(None, description="The role's permissions now")
    token_type: Literal["Bearer"] | None = None
    iss: str | None = None
    aud: str | None = None


class Accepted(ApiModel):
    """`{}`: the request is taken; what follows arrives by mail."""


class EmailChangeCancelled(ApiModel):
    """`{}`: the change is void, or reverted (see the operation)."""


class DataExport(ApiModel):
    """Every record held about the caller, by table (`records`: table name -> rows)."""

    generated_at: Timestamp
    user_id: UserId
    records: dict[str, list[dict[str, Any]]] = Field(
        description="Each table that holds records about the caller, with its rows: profile (`user_accounts`), "
        "subscriptions (plan history), sessions (IP, user agent), refresh tokens and one-time links (dates only), "
        "MFA state (dates only), login attempts, mails (subjects, dates), email changes, audit entries (other "
        "people by role)"
    )


class DeletionScheduled(ApiModel):
    """The account is `pending_deletion` until `deletion_at`; then it is erased."""

    deletion_at: Timestamp = Field(description="When `manas360 maintenance purge-deleted` may erase the account")


class Upgrade(ApiModel):
    plan: str = Field(description="The cheapest plan that has the feature")
    price_cents: int


class ErrorEnvelope(ApiModel):
    """Every error, from every layer: a machine code, a message for people and the request id."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"error": "PermissionDenied", "message": "Permission denied", "request_id": "0f4b1c2d9e8a7b6c"},
                {
                    "error": "ValidationError",
                    "message": "Request validation failed",
                    "request_id": "0f4b1c2d9e8a7b6d",
                    "fields": {"password": "String should have at least 10 characters"},
                },
            ]
        },
    )

    error: str = Field(
        description="The machine-readable code, e.g. `InvalidCredentials` (see the response's "
        "description for the codes of its status)"
    )
    message: str = Field(description="Human readable")
    request_id: str = Field(description="Also in the `X-Request-ID` header")
    fields: dict[str, str] | None = Field(None, description="422: field -> message")
    upgrade: Upgrade | None = Field(
        None, description="403 `FeatureNotAvailable`: the cheapest plan with the feature (null when no plan has it)"
    )
    retry_after: int | None = Field(None, description="Seconds to wait (423, 429, 503)")
    mfa_token: str | None = Field(None, description="403 `MfaRequired`: completes the login at /auth/mfa/verify")
    max_age: int | None = Field(
        None, description="403 `ReauthenticationRequired`: the credential must be at most this many seconds old"
    )
    required_aal: int | None = Field(
        None,
        description="403 `ReauthenticationRequired`: the assurance level the change needs (2: with a second factor)",
    )
    component: str | None = Field(None, description="503: the backing store(s) down (`database`, `redis`)")


class HealthUnavailable(ErrorEnvelope):
    """503 from /health and /health/ready: the envelope with the checks that failed."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["unavailable"]
    database: str
    redis: str
    latency_ms: dict[str, float] | None = None
    pool: Pools | None = None
    uptime_s: float | None = None
    memory: dict[str, int] | None = None
    version: str | None = None
    pid: int | None = None
    mail: str | None = None
    outbox: OutboxCounts | None = None
    webhooks: WebhookState | None = None


def envelope_model(body: dict[str, Any]) -> type[ErrorEnvelope]:
    """The schema an error body is rendered with: /health's 503 carries the failed checks."""
    return HealthUnavailable if "status" in body else ErrorEnvelope


def user_fields(user: object) -> dict[str, Any]:
    """The `<User>` fields of a service's user (manas360.services.accounts.users.User)."""
    return {name: getattr(user, name) for name in User.model_fields}


class Passkey(ApiModel):
    """One of the caller's passkeys."""

    id: str = Field(description="The passkey's id (UUID) in this service (not the authenticator's credential id)")
    name: str = Field(description="The owner's name for it")
    created_at: Timestamp
    last_used_at: Timestamp | None = Field(description="Its latest sign-in or re-authentication; null before any")
    backed_up: bool = Field(description="The authenticator reported it synced or backed up (a multi-device passkey)")


class PasskeyList(ApiModel):
    items: list[Passkey]


class PasskeyCeremony(ApiModel):
    """The start of a WebAuthn ceremony: hand `options` to the browser (after decoding its
    base64url fields: `PublicKeyCredential.parseCreationOptionsFromJSON` /
    `parseRequestOptionsFromJSON`), then send its answer back with `challenge_id`."""

    challenge_id: str = Field(description="Single use, valid 300 s, bound to this ceremony's purpose and user")
    options: dict[str, Any] = Field(
        description="`PublicKeyCredentialCreationOptionsJSON` (registration) or "
        "`PublicKeyCredentialRequestOptionsJSON` (sign-in, re-authentication); binary fields base64url"
    )
