"""Typed settings: one pydantic-settings model, each field overridden by its environment variable.

Every field's default and description live on `Settings` (the README's configuration table is
generated from them: `python -m scripts.settings_table`). Loaded and validated once at start
(`load_settings()`); the same object feeds the app, Tortoise/aerich and the scripts. An invalid
value raises `SettingsError` with a one-line, human-readable message that the CLI prints before
exiting non-zero.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from manas360.config_sources import ConfigSourceError, resolve
from manas360.database_url import DatabaseURL, parse_database_url
from manas360.rate_policies import REQUIRED_POLICIES, RatePolicy, RateTableError, read_rate_table
from manas360.security.signing import SigningKey
from manas360.settings_checks import (
    MIN_SECRET_BYTES,
    IPNetwork,
    WebAuthnParty,
    check_every_environment,
    check_mail,
    check_production,
    parse_introspection_keys,
    parse_keys,
    parse_networks,
    parse_previous_data_keys,
    parse_signing_keys,
    parse_url,
    parse_webauthn,
    parse_webhook,
    split_csv,
)
from manas360.settings_checks import (
    SettingsError as SettingsError,
)
from manas360.smtp import SmtpConfig, parse_smtp_url
from manas360.store.url import RedisConfig, parse_redis_url

ENVIRONMENTS = ("development", "test", "production")
SECRET_FIELDS = (
    "jwt_secret",
    "jwt_previous_keys",
    "jwt_private_keys",
    "superadmin_password",
    "metrics_token",
    "mfa_encryption_key",
    "mfa_encryption_previous_keys",
    "introspection_keys",
    "webhook_secret",
)


def _blank_is_false(value: Any) -> Any:
    # An empty variable (`HSTS=`) has always meant off; pydantic alone would refuse it.
    return False if isinstance(value, str) and not value.strip() else value


Flag = Annotated[bool, BeforeValidator(_blank_is_false)]
CommaList = Annotated[
    tuple[str, ...], NoDecode, BeforeValidator(lambda value: split_csv(value) if isinstance(value, str) else value)
]
"""A comma-separated list in the environment, a tuple of its non-empty trimmed entries here."""


def _networks(value: Any, info: ValidationInfo) -> Any:
    return parse_networks(value, name=str(info.field_name).upper()) if isinstance(value, str) else value


Networks = Annotated[tuple[IPNetwork, ...], NoDecode, BeforeValidator(_networks)]
"""Comma-separated CIDRs in the environment (a bare address is its /32 or /128)."""
OptionalFlag = Annotated[bool | None, BeforeValidator(lambda value: None if value == "" else value)]
"""A switch whose default depends on another setting: unset (or blank) is None."""

# The environment load_settings() reads: a test's dict, or os.environ when None.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("manas360_settings_environ", default=None)


def _environ() -> Mapping[str, str]:
    environ = _ENVIRON.get()
    return os.environ if environ is None else environ


class _EnvironSource(EnvSettingsSource):
    """The environment source over `_environ()` instead of always os.environ."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in _environ().items()}


def _setting(default: Any, *, description: str, shown: str | None = None, **constraints: Any) -> Any:
    """A field with its README description; `shown`: the default column when the value says too
    little; `constraints`: pydantic's bounds (ge, le, gt, min_length), refused in one line."""
    return Field(
        default, description=description, json_schema_extra={"shown_default": shown} if shown else None, **constraints
    )


DEFAULT_TOKEN_CACHE_SIZE = 100_000
"""Verified access tokens cached per worker by default (TOKEN_CACHE_SIZE): at the ~610 bytes
an entry measures (tests/security/test_jwt.py keeps that figure honest), ~58 MiB per worker
when full, which takes 100,000 distinct live tokens within one access-token lifetime (every
worker sees every active user). Smaller than the active population, an LRU misses nearly
always, so size it to the tokens in use, not below."""
_URL_FIELDS = ("database_url", "redis_url", "smtp_url")
_URL_PASSWORD = re.compile(r"(://[^:@/,]*:)[^@/,]*@")


class Settings(BaseSettings):
    """Every setting of the service; each one is overridden by the environment variable of the
    same name in upper case (`port` <- PORT)."""

    model_config = SettingsConfigDict(
        case_sensitive=False, env_prefix="", frozen=True, extra="forbid", str_strip_whitespace=True
    )

    env: Literal["development", "test", "production"] = _setting(
        "development",
        description=(
            "`development`, `test` or `production` (production refuses unsafe settings, listed in "
            "[`docs/operations.md`](docs/operations.md#production-checklist); logs are JSON)"
        ),
    )
    host: str = _setting("127.0.0.1", description="address the Sanic worker processes listen on")
    port: int = _setting(8000, ge=1, le=65535, description="port they listen on")
    workers: int = _setting(2, ge=1, le=256, description="how many Sanic worker processes serve")

    database_url: str = _setting(
        "postgres://root@127.0.0.1:5432/manas360",
        description=("PostgreSQL; user and password may be percent-encoded; TLS parameters in the query (below)"),
    )
    redis_url: str = _setting(
        "redis://127.0.0.1:6379/0",
        description=("Redis: `redis://`, `rediss://` (TLS), `unix://`, or a cluster (below)"),
    )
    redis_cluster: Flag = _setting(
        False, description=("`1` forces cluster mode for a single seed node URL ([`docs/cluster.md`](docs/cluster.md))")
    )
    redis_prefix: str = _setting(
        "m360:", min_length=1, description=("prefix of every Redis key (several deployments can share one Redis)")
    )
    redis_socket_timeout_s: float = _setting(
        1.0,
        description=("a Redis that does not answer within this many seconds fails the request fast (503), one retry"),
    )
    redis_connect_timeout_s: float = _setting(1.0, description="the same for opening a Redis connection")
    redis_max_connections: int = _setting(
        256,
        description=(
            "per worker, for the connections off the hot path (fills, warm-up, pub/sub, health); "
            "more queue, up to the socket timeout"
        ),
    )
    allow_insecure_transport: Flag = _setting(
        False,
        description=(
            "`1`: production accepts a `DATABASE_URL` without `sslmode=require` (or `verify-ca`, `verify-full`) "
            "and a `REDIS_URL` without `rediss://` to a host that is not loopback or a unix socket (a network you "
            "trust to carry passwords, tokens and personal data in clear); refused otherwise"
        ),
    )

    jwt_algorithm: Literal["HS256", "EdDSA", "ES256"] = _setting(
        "HS256",
        description=(
            "how access tokens are signed: `HS256` (a shared secret, `JWT_SECRET`) or `EdDSA` / `ES256` (key pairs "
            "from `JWT_PRIVATE_KEYS`; other services verify with `/.well-known/jwks.json` and cannot mint tokens)"
        ),
    )
    jwt_private_keys: SecretStr = _setting(
        SecretStr(""),
        description=(
            'with `EdDSA`/`ES256`: a JSON array `[{"kid": ..., "pem": ...}]` of PKCS#8 PEM private keys of that '
            "type, the first signs, every one verifies and is published (`manas360 keys generate` makes one; "
            "rotation in [`docs/integration.md`](docs/integration.md))"
        ),
    )
    jwt_secret: SecretStr = _setting(
        SecretStr(""),
        shown="random per start outside production",
        description=(
            f"current signing key with `HS256`, at least {MIN_SECRET_BYTES} bytes; also keys refresh-token "
            "successors (not required in production with `EdDSA`/`ES256`)"
        ),
    )
    jwt_key_id: str = _setting("k1", description="`kid` of the current signing key")
    jwt_previous_keys: SecretStr = _setting(
        SecretStr(""),
        description=(
            "`kid:secret,...` still accepted for verification (key rotation without logging anyone out); "
            f"each secret at least {MIN_SECRET_BYTES} bytes"
        ),
    )
    jwt_issuer: str = _setting("manas360", description="`iss` of access tokens")
    jwt_audience: str = _setting("manas360-api", description="`aud` of access tokens")
    jwt_access_ttl: int = _setting(900, ge=1, description="access token lifetime, seconds")
    jwt_refresh_ttl: int = _setting(604800, ge=1, description="refresh token lifetime, seconds")
    token_cache_size: int = _setting(
        DEFAULT_TOKEN_CACHE_SIZE,
        ge=1,
        le=10_000_000,
        description=(
            "verified access tokens each worker keeps (LRU, ~610 bytes each: ~58 MiB per worker when full); "
            "a hit skips the signature check, never revocation or expiry. Size it to the distinct tokens "
            "in use within one access-token lifetime. (Each worker also keeps up to 10,000 packed per-request "
            "Redis commands, ~10 MiB, one per token and client: not a setting.)"
        ),
    )

    bcrypt_cost: int = _setting(
        12, ge=4, le=31, description=("hashes with another cost are upgraded at the next successful login")
    )
    refresh_reuse_grace_s: int = _setting(
        10, ge=0, description=("grace for a racing second use of the immediate parent refresh token; `0` disables")
    )
    max_body_bytes: int = _setting(65536, ge=1024, le=64 * 1024 * 1024, description="larger bodies are 413")
    hsts: Flag = _setting(False, description="`1` adds `Strict-Transport-Security` (behind TLS)")

    lockout_threshold: int = _setting(5, ge=1, description="failed logins per account and window before a lock")
    lockout_window_s: int = _setting(900, ge=1, description="the window failed logins are counted in, seconds")
    lockout_duration_s: int = _setting(900, ge=1, description="length of a lock, seconds")
    lockout_account_threshold: int = _setting(
        50,
        le=1_000_000,
        description=(
            "failures from all sources within the window that lock the account everywhere, except from a source "
            "with a recent login of it (`LOCKOUT_THRESHOLD` counts per account and source)"
        ),
    )
    lockout_known_source_s: int = _setting(
        2592000,
        ge=0,
        description=(
            "a source (IPv4 address or IPv6 /64) that completed a login this recently keeps only its own limit "
            "under an account-wide lock, seconds"
        ),
    )

    reauth_max_age_s: int = _setting(
        300,
        ge=1,
        description=("step-up: sensitive changes need a credential presented this recently (`auth_time`), seconds"),
    )
    aal2_max_age_s: int = _setting(
        43200,
        ge=0,
        description=("how long refreshes keep a session's `aal` 2 after its second factor, seconds; then `aal` 1"),
    )
    session_max_age_s: int = _setting(
        2592000, ge=60, description=("a session ends this long after its login whatever the refreshes, seconds")
    )
    admin_require_mfa: OptionalFlag = _setting(
        None,
        shown="on in production, off otherwise",
        description=(
            "admin routes need `aal` 2 (a second factor in this session), and admin writes a fresh `auth_time`"
        ),
    )

    mfa_encryption_key: SecretStr = _setting(
        SecretStr(""),
        shown="derived from `JWT_SECRET`",
        description=(
            "the data key: seals TOTP secrets and outbox mails at rest (AES-256-GCM, key through HKDF), at least "
            f"{MIN_SECRET_BYTES} bytes, required in production; keys derived from `JWT_SECRET` and `JWT_PREVIOUS_KEYS` "
            "still open what was sealed before it was set, so a JWT key rotation loses nothing "
            "([`docs/auth.md`](docs/auth.md), multi-factor)"
        ),
    )
    mfa_encryption_previous_keys: SecretStr = _setting(
        SecretStr(""),
        description=(
            "`kid:key,...`: earlier data keys, which only open (rotation: move the old key here, set a new "
            f"`MFA_ENCRYPTION_KEY`); each key at least {MIN_SECRET_BYTES} bytes"
        ),
    )
    introspection_keys: SecretStr = _setting(
        SecretStr(""),
        description=(
            "`name:key,...`: the services allowed to call `POST /api/v1/auth/introspect` (each sends "
            f"`Authorization: Bearer <key>`; keys of at least {MIN_SECRET_BYTES} random bytes); empty: introspection "
            "answers 401 to everyone"
        ),
    )

    # Empty: the limit and window of the policy table (the README shows those).
    rate_limit_global: str = _setting(
        "", description=("`<requests>/<window seconds>` of the `global` policy; empty: the policy table's")
    )
    rate_limit_auth: str = _setting(
        "", description=("`<requests>/<window seconds>` of the `auth` policy; empty: the policy table's")
    )
    rate_limit_api: str = _setting(
        "", description=("`<requests>/<window seconds>` of the `api` policy; empty: the policy table's")
    )
    rate_limits_file: str = _setting(
        "",
        shown="empty (`config/ratelimits.toml`)",
        description=(
            "the rate-limit policy table: per policy its key (ip, ip+route, user), the routes it applies to, limit, "
            "window and fail-open; `RATE_LIMIT_<NAME>` still overrides limit and window "
            "([`docs/edge.md`](docs/edge.md))"
        ),
    )
    # /32 at the shortest: an RIR's smallest allocation to a provider; shorter would give
    # whole providers one budget. 128 counts every IPv6 address on its own.
    rate_limit_ipv6_prefix: int = _setting(
        64,
        ge=32,
        le=128,
        description=(
            "an IPv6 client counts as its network of this many bits (32..128) wherever a limit counts clients by "
            "address: one subscriber usually holds a whole /64 and could otherwise rotate through it; IPv4 "
            "addresses (and IPv4-mapped IPv6 ones) count one by one ([`docs/edge.md`](docs/edge.md))"
        ),
    )

    allowed_origins: CommaList = _setting((), description="comma-separated CORS origins (`*` is refused in production)")
    trusted_proxies: Networks = _setting((), description="comma-separated CIDRs whose `X-Forwarded-For` is believed")
    # Not even loopback by default: a reverse proxy on the host is loopback.
    metrics_allowed_cidrs: Networks = _setting(
        (),
        description=(
            "networks that may scrape `/metrics` without the token; loopback is not trusted unless listed "
            "(a reverse proxy on the same host connects from loopback)"
        ),
    )
    metrics_token: SecretStr = _setting(
        SecretStr(""), description=("when set, `Authorization: Bearer <token>` also opens `/metrics`")
    )

    db_pool_min: int = _setting(2, ge=1, description="PostgreSQL connections each worker keeps open")
    db_pool_max: int = _setting(20, description="PostgreSQL connections each worker opens at most")
    db_statement_timeout: int = _setting(30000, ge=0, description="statement timeout in ms")
    # On at 500 ms: far beyond a healthy statement here (about 1 ms), well under the statement
    # timeout; it costs ~4 us per statement and the gated hot path runs no SQL at all.
    db_slow_query_ms: int = _setting(
        500,
        ge=0,
        le=3_600_000,
        description=(
            "statements slower than this (ms) are logged once as a WARNING with the request id and the "
            "statement text, never its values; `0` turns it off"
        ),
    )

    request_timeout_s: int = _setting(30, description="seconds a request may take: slow clients cannot hold a worker")
    keep_alive_timeout_s: int = _setting(5, description="seconds an idle keep-alive connection stays open")
    graceful_shutdown_timeout_s: int = _setting(15, description="how long SIGTERM waits for in-flight requests")

    superadmin_email: str = _setting(
        "",
        shown="unset",
        description=(
            "`manas360 seed` creates this superadmin or rotates its password; it never promotes an existing "
            "account of another role (exit 1, one line) unless run with `--promote-existing-superadmin`, and any "
            "password or role it changes revokes that account's sessions"
        ),
    )
    superadmin_password: SecretStr = _setting(SecretStr(""), shown="unset", description="that superadmin's password")

    smtp_url: str = _setting(
        "",
        shown="unset",
        description=(
            "mail delivery: `smtp://[user:pass@]host:port` (plain), `smtp+starttls://…` or `smtps://…` (TLS); "
            "query `ssl_ca_certs=<path>`, `timeout=<s>`. Unset: see `MAIL_BACKEND` (in development, in a terminal, "
            "mails are printed in full; otherwise they wait in the outbox and `/health` shows mail as "
            "`unconfigured`); production refuses to start without it"
        ),
    )
    mail_from: str = _setting("no-reply@localhost", description="`From` of every mail the service sends")
    public_base_url: str = _setting(
        "http://127.0.0.1:8000",
        description=(
            "where users open the links in mails: `{PUBLIC_BASE_URL}/reset-password#token=…`, "
            "`{PUBLIC_BASE_URL}/verify-email#token=…` (the token in the fragment, never sent to a server; http or "
            "https, https in production)"
        ),
    )
    password_reset_ttl_s: int = _setting(1800, ge=60, description="how long a password-reset token is valid, seconds")
    email_verify_ttl_s: int = _setting(
        86400, ge=60, description=("how long an email-verification token is valid, seconds")
    )
    require_verified_email: Flag = _setting(
        False,
        description=(
            "`1`: no unverified account holds a session: register answers without tokens, a login with the right "
            "password and a refresh answer 403 `EmailNotVerified`"
        ),
    )
    email_change_ttl_s: int = _setting(
        3600,
        ge=60,
        description="how long the confirmation link of an email change (to the new address) is valid, seconds",
    )
    email_change_revert_s: int = _setting(
        604800,
        ge=60,
        description=(
            "after a confirmed email change, how long the cancel link mailed to the old address reverts it (and the "
            "old address stays reserved for the account), seconds"
        ),
    )
    account_deletion_grace_s: int = _setting(
        604800,
        ge=0,
        description=(
            "how long a scheduled deletion waits (status `pending_deletion`, cancellable) before "
            "`manas360 maintenance purge-deleted` erases the account, seconds"
        ),
    )
    erasure_ledger_path: str = _setting(
        "",
        description=(
            "a file outside the database's backups where every purged account id is appended; a restore from "
            "backup replays it before serving (`manas360 maintenance replay-erasures`); empty: only the database's "
            "own ledger"
        ),
    )
    mail_per_account_hourly: int = _setting(
        3,
        ge=1,
        description=(
            "reset mails, and verification mails, per account per hour; beyond, requests still answer 202 and "
            "nothing is sent"
        ),
    )
    mail_backend: Literal["auto", "smtp", "console", "none"] = _setting(
        "auto",
        description=(
            "`auto`: SMTP when `SMTP_URL` is set, else in development the console backend when the service "
            "runs in a terminal (mails printed in full, links included), else none (mail waits in the outbox); "
            "`console` prints mails wherever the log goes (never in production); `none` sends nothing"
        ),
    )
    mail_send_timeout_s: float = _setting(
        120.0,
        gt=0,
        le=600,
        description=(
            "the longest one delivery may take, all SMTP steps together; a sender owns a row for twice this "
            "(plus 10 s) from the moment it starts delivering it"
        ),
    )
    outbox_max_age_s: int = _setting(
        86400,
        ge=60,
        description=(
            "an outbox row (a mail) still undelivered after this many seconds is given up: a dead letter, "
            "counted in `/health` and `/metrics`"
        ),
    )
    mail_poll_s: float = _setting(
        2.0,
        ge=0.05,
        le=3600,
        description=("how often each worker's mail sender looks for mail to send (new mail and retries that are due)"),
    )
    mail_retry_max_s: int = _setting(
        300,
        ge=1,
        le=86400,
        description=(
            "longest wait between two delivery attempts of one mail while SMTP fails (backoff doubles from 1 s)"
        ),
    )
    webhook_url: str = _setting(
        "",
        description=(
            "where signed event notifications are POSTed (Standard Webhooks; `https://` in production); empty: no "
            "events are recorded ([`docs/integration.md`](docs/integration.md#webhooks))"
        ),
    )
    webhook_secret: SecretStr = _setting(
        SecretStr(""),
        description=(
            "one or more `whsec_<base64>` secrets, space-separated: each delivery carries a signature by each "
            f"(rotation without a gap); at least {MIN_SECRET_BYTES} bytes each in production; required with "
            "`WEBHOOK_URL`"
        ),
    )
    webhook_max_age_s: int = _setting(
        86400,
        ge=60,
        description=(
            "an event undelivered this long is given up (a dead letter, audited and counted) and the user's next "
            "event goes out"
        ),
    )
    webhook_timeout_s: float = _setting(
        10.0,
        gt=0,
        le=300,
        description=("the longest one delivery may take; a slower receiver counts as failed and is retried"),
    )

    webauthn_rp_id: str = _setting(
        "",
        shown="host of `PUBLIC_BASE_URL`",
        description=(
            "the passkeys' relying party id: a host name, the origins' host or a registrable suffix of it "
            "(production refuses anything else); passkeys made under one id do not work under another"
        ),
    )
    webauthn_rp_name: str = _setting(
        "MANAS360", min_length=1, max_length=64, description="the relying party's name authenticators show"
    )
    webauthn_origins: str = _setting(
        "",
        shown="`PUBLIC_BASE_URL`",
        description=(
            "comma-separated origins (`scheme://host[:port]`) accepted in a passkey's `clientDataJSON`; "
            "https only in production"
        ),
    )

    log_level: str = _setting(
        "INFO", description=("`TRACE`, `DEBUG`, `INFO`, `SUCCESS`, `WARNING`, `ERROR` or `CRITICAL`")
    )
    log_json: str = _setting(
        "auto", description=("`auto`: JSON lines when stderr is not a terminal or in production; `1`/`0` force")
    )
    access_log: Flag = _setting(
        False,
        description=(
            "`1`: one INFO line per request (method, route template, status, `duration_ms`, request id, client "
            "address; never the path, query, headers or body); needs `LOG_LEVEL` `INFO` or lower"
        ),
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The URLs may carry a password: repr/str (and so any log line) show them without it.
        for name, value in super().__repr_args__():
            yield name, (_URL_PASSWORD.sub(r"\1***@", value) if name in _URL_FIELDS else value)

    # Derived once by the validator below; private, so repr and dumps never show them.
    _database: DatabaseURL = PrivateAttr()
    _redis: RedisConfig = PrivateAttr()
    _smtp: SmtpConfig | None = PrivateAttr(None)
    _verification_keys: dict[str, str] = PrivateAttr(default_factory=dict)
    _previous_data_keys: dict[str, str] = PrivateAttr(default_factory=dict)
    _signing_keys: tuple[SigningKey, ...] = PrivateAttr(())
    _introspection_keys: dict[str, bytes] = PrivateAttr(default_factory=dict)
    _webhook_secrets: tuple[bytes, ...] = PrivateAttr(())
    _webauthn: WebAuthnParty = PrivateAttr()
    _rate_policies: dict[str, RatePolicy] = PrivateAttr(default_factory=dict)
    _rate_exempt_paths: tuple[str, ...] = PrivateAttr(())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment (which load_settings has merged with the .env
        file and the X_FILE secrets, manas360.config_sources)."""
        return init_settings, _EnvironSource(settings_cls)

    @field_validator("jwt_secret")
    @classmethod
    def _dev_secret(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        """Outside production an empty JWT_SECRET is a random one (the dev default, not a rule)."""
        if value.get_secret_value() or info.data.get("env") == "production":
            return value
        return SecretStr(secrets.token_urlsafe(48))

    @model_validator(mode="after")
    def _validate(self) -> Settings:
        """Every cross-field and range rule, then the derived values, computed once."""
        check_every_environment(self)
        self._verification_keys = parse_keys(self)
        self._previous_data_keys = parse_previous_data_keys(self)
        self._signing_keys = parse_signing_keys(self)
        self._introspection_keys = parse_introspection_keys(self.introspection_keys.get_secret_value())
        self._webhook_secrets = parse_webhook(self)
        self._database = parse_url("DATABASE_URL", parse_database_url, self.database_url)
        self._redis = parse_url("REDIS_URL", partial(parse_redis_url, cluster=self.redis_cluster), self.redis_url)
        self._smtp = parse_url("SMTP_URL", parse_smtp_url, self.smtp_url) if self.smtp_url else None
        check_mail(self)
        self._rate_policies, self._rate_exempt_paths = _read_rate_table(self, _environ())
        if self.is_production:
            check_production(self)
        self._webauthn = parse_webauthn(self)  # after PUBLIC_BASE_URL's own refusals: its default comes from it
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def admin_mfa_required(self) -> bool:
        """ADMIN_REQUIRE_MFA, or production when it is unset."""
        return self.is_production if self.admin_require_mfa is None else self.admin_require_mfa

    @property
    def origins(self) -> tuple[str, ...]:
        return self.allowed_origins

    @property
    def proxy_networks(self) -> tuple[IPNetwork, ...]:
        # Read per request: a field, so a plain instance attribute (no BaseModel.__getattr__).
        return self.trusted_proxies

    @property
    def metrics_networks(self) -> tuple[IPNetwork, ...]:
        return self.metrics_allowed_cidrs

    @property
    def verification_keys(self) -> dict[str, str]:
        """kid -> secret for every key a token may be verified with (current first)."""
        return self._verification_keys

    @property
    def signing_keys(self) -> tuple[SigningKey, ...]:
        """JWT_PRIVATE_KEYS, parsed (empty with HS256): the first signs."""
        return self._signing_keys

    @property
    def introspection_keys_by_name(self) -> dict[str, bytes]:
        """INTROSPECTION_KEYS, parsed: service name -> key."""
        return self._introspection_keys

    @property
    def webauthn(self) -> WebAuthnParty:
        """The passkeys' relying party: WEBAUTHN_RP_ID, WEBAUTHN_RP_NAME and WEBAUTHN_ORIGINS, defaults applied."""
        return self._webauthn

    @property
    def webhook_secrets(self) -> tuple[bytes, ...]:
        """WEBHOOK_SECRET, decoded: the keys each delivery is signed with."""
        return self._webhook_secrets

    @property
    def previous_data_keys(self) -> dict[str, str]:
        """MFA_ENCRYPTION_PREVIOUS_KEYS, parsed: key id -> key."""
        return self._previous_data_keys

    @property
    def data_key_secrets(self) -> tuple[str, ...]:
        """The data key ring, current first: MFA_ENCRYPTION_KEY (when set), its previous keys,
        then the JWT keys, from which the data key is derived when it is not set (each use
        derives its own key from these through HKDF, manas360.security.secretbox)."""
        configured = (
            self.mfa_encryption_key.get_secret_value(),
            *self._previous_data_keys.values(),
            *self._verification_keys.values(),
        )
        return tuple(secret for secret in configured if secret)

    @property
    def database(self) -> DatabaseURL:
        """DATABASE_URL, parsed: what every PostgreSQL connection uses."""
        return self._database

    @property
    def redis(self) -> RedisConfig:
        """REDIS_URL (with REDIS_CLUSTER), parsed: what every Redis connection uses."""
        return self._redis

    @property
    def smtp(self) -> SmtpConfig | None:
        """SMTP_URL, parsed; None when unset (console backend in development, else mail waits)."""
        return self._smtp

    @property
    def rate_policies(self) -> dict[str, RatePolicy]:
        policies: dict[str, RatePolicy] = self._private["_rate_policies"]  # per request: see proxy_networks
        return policies

    @property
    def _private(self) -> dict[str, Any]:
        private = self.__pydantic_private__
        assert private is not None  # every private attribute has a default: pydantic always sets it
        return private

    @property
    def rate_exempt_paths(self) -> tuple[str, ...]:
        """Paths under no rate-limit policy: each one and everything below it."""
        return self._rate_exempt_paths


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build and validate settings from `environ` (default os.environ) over the model's defaults.

    Outside production an empty JWT_SECRET becomes a random secret, exported to os.environ
    so that worker processes spawned later verify each other's tokens.
    """
    try:  # the .env file (for the process's own environment only) and X_FILE secrets
        source = resolve(
            os.environ if environ is None else environ, secrets=SECRET_FIELDS + _URL_FIELDS, dotenv=environ is None
        )
    except ConfigSourceError as exc:
        raise SettingsError(str(exc)) from None
    with _reading(source):
        try:
            settings = Settings()
        except ValidationError as exc:
            raise SettingsError(_one_line(exc)) from None
    if environ is None and not source.get("JWT_SECRET", "").strip():
        os.environ["JWT_SECRET"] = settings.jwt_secret.get_secret_value()
    return settings


@contextmanager
def _reading(environ: Mapping[str, str]) -> Iterator[None]:
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def _one_line(exc: ValidationError) -> str:
    """The first error as one line: ours verbatim, pydantic's as `NAME=value is not ...`."""
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, SettingsError):
        return str(cause)
    name = str(error["loc"][0]) if error["loc"] else ""
    field = Settings.model_fields.get(name)
    shown = name.upper() if name in SECRET_FIELDS else f"{name.upper()}={error['input']!r}"
    if field is None:
        return f"{shown}: {error['msg']}"
    choices = get_args(field.annotation)
    if error["type"] == "literal_error" and choices:
        return f"{shown} is not one of {', '.join(choices)}"
    if error["type"] == "string_too_short":
        return f"{name.upper()} must not be empty"
    if error["type"] in _BOUND_ERRORS:
        return f"{name.upper()} must be {_bounds(field)}, not {error['input']}"
    kind = getattr(field.annotation, "__name__", str(field.annotation))
    return f"{shown} is not a valid {kind}"


_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _bounds(field: FieldInfo) -> str:
    """A field's bounds as the refusal states them: `1..65535`, `>= 60`, `> 0 and <= 600`."""
    limits = {
        kind: getattr(item, kind)
        for item in field.metadata
        for kind in ("ge", "gt", "le")
        if getattr(item, kind, None) is not None
    }
    if "ge" in limits and "le" in limits:
        return f"{limits['ge']}..{limits['le']}"
    return " and ".join(
        f"{sign} {limits[kind]}" for kind, sign in (("ge", ">="), ("gt", ">"), ("le", "<=")) if kind in limits
    )


def _read_rate_table(s: Settings, env_vars: Mapping[str, str]) -> tuple[dict[str, RatePolicy], tuple[str, ...]]:
    """The policy table, each policy's limit/window overridden by RATE_LIMIT_<NAME>."""

    def override(name: str) -> str:
        return (
            str(getattr(s, f"rate_limit_{name}"))
            if name in REQUIRED_POLICIES
            else env_vars.get(f"RATE_LIMIT_{name.upper()}", "")
        )

    try:
        return read_rate_table(
            path=s.rate_limits_file, override=override, taken=lambda name: f"rate_limit_{name}" in Settings.model_fields
        )
    except RateTableError as exc:
        raise SettingsError(str(exc)) from None
