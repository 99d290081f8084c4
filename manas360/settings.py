"""Typed settings: one pydantic-settings model, each field overridden by its environment variable.

Every field's default and description live on `Settings` (the README's configuration table is
generated from them: `python -m manas360.settings`). Loaded and validated once at start
(`load_settings()`); the same object feeds the app, Tortoise/aerich and the scripts. An invalid
value raises `SettingsError` with a one-line, human-readable message that the CLI prints before
exiting non-zero.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

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
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from manas360.config_sources import ConfigSourceError, resolve
from manas360.database_url import DatabaseURL, parse_database_url
from manas360.smtp import SmtpConfig, parse_smtp_url
from manas360.store.url import RedisConfig, parse_redis_url

ENVIRONMENTS = ("development", "test", "production")
MIN_SECRET_BYTES = 32
SECRET_FIELDS = ("jwt_secret", "jwt_previous_keys", "superadmin_password", "metrics_token", "mfa_encryption_key",
                 "mfa_encryption_previous_keys")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A setting is missing, malformed or unsafe for the chosen environment."""


RATE_KEYS = ("ip", "user", "ip+route")
RATE_SCOPES = ("every-request", "routes", "authenticated")
REQUIRED_POLICIES = ("global", "auth", "api")
_POLICY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_ROUTE_SPEC = re.compile(r"^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (/[^\s]*)$")


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """A sliding-window limit: `limit` requests per `window_s` seconds.

    The rest comes from the policy table (config/ratelimits.toml): what a request is
    counted under (`key`), which requests the policy applies to (`applies`, `routes`) and
    whether a Redis failure during the check lets the request through (`fail_open`).
    """

    name: str
    limit: int
    window_s: int
    key: str = "ip"
    applies: str = "routes"
    routes: tuple[tuple[str, str], ...] = ()
    fail_open: bool = True


def _blank_is_false(value: Any) -> Any:
    # An empty variable (`HSTS=`) has always meant off; pydantic alone would refuse it.
    return False if isinstance(value, str) and not value.strip() else value


Flag = Annotated[bool, BeforeValidator(_blank_is_false)]
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


def _setting(default: Any, *, description: str, shown: str | None = None) -> Any:
    """A field with its README description; `shown`: the default column when the value says too little."""
    return Field(default, description=description, json_schema_extra={"shown_default": shown} if shown else None)


DEFAULT_TOKEN_CACHE_SIZE = 100_000
"""Verified access tokens cached per worker by default (TOKEN_CACHE_SIZE): at the ~610 bytes
an entry measures (tests/security/test_jwt.py keeps that figure honest), ~58 MiB per worker
when full, which takes 100,000 distinct live tokens within one access-token lifetime (every
worker sees every active user). Smaller than the active population, an LRU misses nearly
always, so size it to the tokens in use, not below."""
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_URL_FIELDS = ("database_url", "redis_url", "smtp_url")
_URL_PASSWORD = re.compile(r"(://[^:@/,]*:)[^@/,]*@")


class Settings(BaseSettings):
    """Every setting of the service; each one is overridden by the environment variable of the
    same name in upper case (`port` <- PORT)."""

    model_config = SettingsConfigDict(case_sensitive=False, env_prefix="", frozen=True, extra="forbid",
                                      str_strip_whitespace=True)

    env: Literal["development", "test", "production"] = _setting("development", description=(
        "`development`, `test` or `production` (production refuses unsafe settings, listed in "
        "[`docs/operations.md`](docs/operations.md#production-checklist); logs are JSON)"))
    host: str = _setting("127.0.0.1", description="address the Sanic worker processes listen on")
    port: int = _setting(8000, description="port they listen on")
    workers: int = _setting(2, description="how many Sanic worker processes serve")

    database_url: str = _setting("postgres://root@127.0.0.1:5432/manas360", description=(
        "PostgreSQL; user and password may be percent-encoded; TLS parameters in the query (below)"))
    redis_url: str = _setting("redis://127.0.0.1:6379/0", description=(
        "Redis: `redis://`, `rediss://` (TLS), `unix://`, or a cluster (below)"))
    redis_cluster: Flag = _setting(False, description=(
        "`1` forces cluster mode for a single seed node URL ([`docs/cluster.md`](docs/cluster.md))"))
    redis_prefix: str = _setting("m360:", description=(
        "prefix of every Redis key (several deployments can share one Redis)"))
    redis_socket_timeout_s: float = _setting(1.0, description=(
        "a Redis that does not answer within this many seconds fails the request fast (503), one retry"))
    redis_connect_timeout_s: float = _setting(1.0, description="the same for opening a Redis connection")
    redis_max_connections: int = _setting(256, description=(
        "per worker, for the connections off the hot path (fills, warm-up, pub/sub, health); "
        "more queue, up to the socket timeout"))
    allow_insecure_transport: Flag = _setting(False, description=(
        "`1`: production accepts a `DATABASE_URL` without `sslmode=require` (or `verify-ca`, `verify-full`) "
        "and a `REDIS_URL` without `rediss://` to a host that is not loopback or a unix socket (a network you "
        "trust to carry passwords, tokens and personal data in clear); refused otherwise"))

    jwt_secret: SecretStr = _setting(SecretStr(""), shown="random per start outside production", description=(
        f"current signing key (HS256, pinned), at least {MIN_SECRET_BYTES} bytes"))
    jwt_key_id: str = _setting("k1", description="`kid` of the current signing key")
    jwt_previous_keys: SecretStr = _setting(SecretStr(""), description=(
        "`kid:secret,...` still accepted for verification (key rotation without logging anyone out); "
        f"each secret at least {MIN_SECRET_BYTES} bytes"))
    jwt_issuer: str = _setting("manas360", description="`iss` of access tokens")
    jwt_audience: str = _setting("manas360-api", description="`aud` of access tokens")
    jwt_access_ttl: int = _setting(900, description="access token lifetime, seconds")
    jwt_refresh_ttl: int = _setting(604800, description="refresh token lifetime, seconds")
    token_cache_size: int = _setting(DEFAULT_TOKEN_CACHE_SIZE, description=(
        "verified access tokens each worker keeps (LRU, ~610 bytes each: ~58 MiB per worker when full); "
        "a hit skips the signature check, never revocation or expiry. Size it to the distinct tokens "
        "in use within one access-token lifetime. (Each worker also keeps up to 10,000 packed per-request "
        "Redis commands, ~10 MiB, one per token and client: not a setting.)"))

    bcrypt_cost: int = _setting(12, description="hashes with another cost are upgraded at the next successful login")
    refresh_reuse_grace_s: int = _setting(10, description=(
        "grace for a racing second use of the immediate parent refresh token; `0` disables"))
    max_body_bytes: int = _setting(65536, description="larger bodies are 413")
    hsts: Flag = _setting(False, description="`1` adds `Strict-Transport-Security` (behind TLS)")

    lockout_threshold: int = _setting(5, description="failed logins per account and window before a lock")
    lockout_window_s: int = _setting(900, description="the window failed logins are counted in, seconds")
    lockout_duration_s: int = _setting(900, description="length of a lock, seconds")
    lockout_account_threshold: int = _setting(50, description=(
        "failures from all sources within the window that lock the account everywhere, except from a source "
        "with a recent login of it (`LOCKOUT_THRESHOLD` counts per account and source)"))
    lockout_known_source_s: int = _setting(2592000, description=(
        "a source (IPv4 address or IPv6 /64) that completed a login this recently keeps only its own limit "
        "under an account-wide lock, seconds"))

    reauth_max_age_s: int = _setting(300, description=(
        "step-up: sensitive changes need a credential presented this recently (`auth_time`), seconds"))
    aal2_max_age_s: int = _setting(43200, description=(
        "how long refreshes keep a session's `aal` 2 after its second factor, seconds; then `aal` 1"))
    session_max_age_s: int = _setting(2592000, description=(
        "a session ends this long after its login whatever the refreshes, seconds"))
    admin_require_mfa: OptionalFlag = _setting(None, shown="on in production, off otherwise", description=(
        "admin routes need `aal` 2 (a second factor in this session), and admin writes a fresh `auth_time`"))

    mfa_encryption_key: SecretStr = _setting(SecretStr(""), shown="derived from `JWT_SECRET`", description=(
        "the data key: seals TOTP secrets and outbox mails at rest (AES-256-GCM, key through HKDF), at least "
        f"{MIN_SECRET_BYTES} bytes, required in production; keys derived from `JWT_SECRET` and `JWT_PREVIOUS_KEYS` "
        "still open what was sealed before it was set, so a JWT key rotation loses nothing "
        "([`docs/auth.md`](docs/auth.md), multi-factor)"))
    mfa_encryption_previous_keys: SecretStr = _setting(SecretStr(""), description=(
        "`kid:key,...`: earlier data keys, which only open (rotation: move the old key here, set a new "
        f"`MFA_ENCRYPTION_KEY`); each key at least {MIN_SECRET_BYTES} bytes"))

    # Empty: the limit and window of the policy table (the README shows those).
    rate_limit_global: str = _setting("", description=(
        "`<requests>/<window seconds>` of the `global` policy; empty: the policy table's"))
    rate_limit_auth: str = _setting("", description=(
        "`<requests>/<window seconds>` of the `auth` policy; empty: the policy table's"))
    rate_limit_api: str = _setting("", description=(
        "`<requests>/<window seconds>` of the `api` policy; empty: the policy table's"))
    rate_limits_file: str = _setting("", shown="empty (`config/ratelimits.toml`)", description=(
        "the rate-limit policy table: per policy its key (ip, ip+route, user), the routes it applies to, limit, "
        "window and fail-open; `RATE_LIMIT_<NAME>` still overrides limit and window ([`docs/edge.md`](docs/edge.md))"))
    # /32 at the shortest: an RIR's smallest allocation to a provider; shorter would give
    # whole providers one budget. 128 counts every IPv6 address on its own.
    rate_limit_ipv6_prefix: int = _setting(64, description=(
        "an IPv6 client counts as its network of this many bits (32..128) wherever a limit counts clients by "
        "address: one subscriber usually holds a whole /64 and could otherwise rotate through it; IPv4 "
        "addresses (and IPv4-mapped IPv6 ones) count one by one ([`docs/edge.md`](docs/edge.md))"))

    allowed_origins: str = _setting("", description="comma-separated CORS origins (`*` is refused in production)")
    trusted_proxies: str = _setting("", description="comma-separated CIDRs whose `X-Forwarded-For` is believed")
    # Not even loopback by default: a reverse proxy on the host is loopback.
    metrics_allowed_cidrs: str = _setting("", description=(
        "networks that may scrape `/metrics` without the token; loopback is not trusted unless listed "
        "(a reverse proxy on the same host connects from loopback)"))
    metrics_token: SecretStr = _setting(SecretStr(""), description=(
        "when set, `Authorization: Bearer <token>` also opens `/metrics`"))

    db_pool_min: int = _setting(2, description="PostgreSQL connections each worker keeps open")
    db_pool_max: int = _setting(20, description="PostgreSQL connections each worker opens at most")
    db_statement_timeout: int = _setting(30000, description="statement timeout in ms")
    # On at 500 ms: far beyond a healthy statement here (about 1 ms), well under the statement
    # timeout; it costs ~4 us per statement and the gated hot path runs no SQL at all.
    db_slow_query_ms: int = _setting(500, description=(
        "statements slower than this (ms) are logged once as a WARNING with the request id and the "
        "statement text, never its values; `0` turns it off"))

    request_timeout_s: int = _setting(30, description="seconds a request may take: slow clients cannot hold a worker")
    keep_alive_timeout_s: int = _setting(5, description="seconds an idle keep-alive connection stays open")
    graceful_shutdown_timeout_s: int = _setting(15, description="how long SIGTERM waits for in-flight requests")

    superadmin_email: str = _setting("", shown="unset", description=(
        "`manas360 seed` creates this superadmin or rotates its password; it never promotes an existing "
        "account of another role (exit 1, one line) unless run with `--promote-existing-superadmin`, and any "
        "password or role it changes revokes that account's sessions"))
    superadmin_password: SecretStr = _setting(SecretStr(""), shown="unset", description="that superadmin's password")

    smtp_url: str = _setting("", shown="unset", description=(
        "mail delivery: `smtp://[user:pass@]host:port` (plain), `smtp+starttls://…` or `smtps://…` (TLS); "
        "query `ssl_ca_certs=<path>`, `timeout=<s>`. Unset: see `MAIL_BACKEND` (in development, in a terminal, "
        "mails are printed in full; otherwise they wait in the outbox and `/health` shows mail as "
        "`unconfigured`); production refuses to start without it"))
    mail_from: str = _setting("no-reply@localhost", description="`From` of every mail the service sends")
    public_base_url: str = _setting("http://127.0.0.1:8000", description=(
        "where users open the links in mails: `{PUBLIC_BASE_URL}/reset-password#token=…`, "
        "`{PUBLIC_BASE_URL}/verify-email#token=…` (the token in the fragment, never sent to a server; http or "
        "https, https in production)"))
    password_reset_ttl_s: int = _setting(1800, description="how long a password-reset token is valid, seconds")
    email_verify_ttl_s: int = _setting(86400, description="how long an email-verification token is valid, seconds")
    require_verified_email: Flag = _setting(False, description=(
        "`1`: no unverified account holds a session: register answers without tokens, a login with the right "
        "password and a refresh answer 403 `EmailNotVerified`"))
    mail_per_account_hourly: int = _setting(3, description=(
        "reset mails, and verification mails, per account per hour; beyond, requests still answer 202 and "
        "nothing is sent"))
    mail_backend: Literal["auto", "smtp", "console", "none"] = _setting("auto", description=(
        "`auto`: SMTP when `SMTP_URL` is set, else in development the console backend when the service "
        "runs in a terminal (mails printed in full, links included), else none (mail waits in the outbox); "
        "`console` prints mails wherever the log goes (never in production); `none` sends nothing"))
    mail_send_timeout_s: float = _setting(120.0, description=(
        "the longest one delivery may take, all SMTP steps together; a sender owns a row for twice this "
        "(plus 10 s) from the moment it starts delivering it"))
    outbox_max_age_s: int = _setting(86400, description=(
        "an outbox row (a mail) still undelivered after this many seconds is given up: a dead letter, "
        "counted in `/health` and `/metrics`"))
    mail_poll_s: float = _setting(2.0, description=(
        "how often each worker's mail sender looks for mail to send (new mail and retries that are due)"))
    mail_retry_max_s: int = _setting(300, description=(
        "longest wait between two delivery attempts of one mail while SMTP fails (backoff doubles from 1 s)"))

    log_level: str = _setting("INFO", description=(
        "`TRACE`, `DEBUG`, `INFO`, `SUCCESS`, `WARNING`, `ERROR` or `CRITICAL`"))
    log_json: str = _setting("auto", description=(
        "`auto`: JSON lines when stderr is not a terminal or in production; `1`/`0` force"))
    access_log: Flag = _setting(False, description=(
        "`1`: one INFO line per request (method, route template, status, `duration_ms`, request id, client "
        "address; never the path, query, headers or body); needs `LOG_LEVEL` `INFO` or lower"))

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The URLs may carry a password: repr/str (and so any log line) show them without it.
        for name, value in super().__repr_args__():
            yield name, (_URL_PASSWORD.sub(r"\1***@", value) if name in _URL_FIELDS else value)

    # Derived once by the validator below; private, so repr and dumps never show them.
    _database: DatabaseURL = PrivateAttr()
    _redis: RedisConfig = PrivateAttr()
    _smtp: SmtpConfig | None = PrivateAttr(None)
    _proxy_networks: tuple[IPNetwork, ...] = PrivateAttr(())
    _metrics_networks: tuple[IPNetwork, ...] = PrivateAttr(())
    _verification_keys: dict[str, str] = PrivateAttr(default_factory=dict)
    _previous_data_keys: dict[str, str] = PrivateAttr(default_factory=dict)
    _rate_policies: dict[str, RatePolicy] = PrivateAttr(default_factory=dict)
    _rate_exempt_paths: tuple[str, ...] = PrivateAttr(())

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
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
        _require(1 <= self.port <= 65535, f"PORT must be 1..65535, not {self.port}")
        _require(1 <= self.workers <= 256, f"WORKERS must be 1..256, not {self.workers}")
        _require(bool(self.redis_prefix), "REDIS_PREFIX must not be empty")
        _require(4 <= self.bcrypt_cost <= 31, f"BCRYPT_COST must be 4..31, not {self.bcrypt_cost}")
        _require(self.jwt_access_ttl > 0 and self.jwt_refresh_ttl > 0,
                 "JWT_ACCESS_TTL and JWT_REFRESH_TTL must be positive")
        _require(1 <= self.token_cache_size <= 10_000_000, "TOKEN_CACHE_SIZE must be 1..10000000")
        _require(32 <= self.rate_limit_ipv6_prefix <= 128,
                 f"RATE_LIMIT_IPV6_PREFIX must be 32..128, not {self.rate_limit_ipv6_prefix}")
        _require(self.refresh_reuse_grace_s >= 0, "REFRESH_REUSE_GRACE_S must be >= 0")
        _require(1024 <= self.max_body_bytes <= 64 * 1024 * 1024, "MAX_BODY_BYTES must be 1024..67108864")
        _require(self.lockout_threshold >= 1 and self.lockout_window_s >= 1 and self.lockout_duration_s >= 1,
                 "LOCKOUT_THRESHOLD, LOCKOUT_WINDOW_S and LOCKOUT_DURATION_S must be positive")
        _require(self.lockout_threshold <= self.lockout_account_threshold <= 1_000_000,
                 "LOCKOUT_ACCOUNT_THRESHOLD must be at least LOCKOUT_THRESHOLD")
        _require(self.lockout_known_source_s >= 0, "LOCKOUT_KNOWN_SOURCE_S must be >= 0")
        _require(self.reauth_max_age_s >= 1 and self.aal2_max_age_s >= 0 and self.session_max_age_s >= 60,
                 "REAUTH_MAX_AGE_S must be >= 1, AAL2_MAX_AGE_S >= 0 and SESSION_MAX_AGE_S >= 60")
        _require(self.mail_per_account_hourly >= 1, "MAIL_PER_ACCOUNT_HOURLY must be >= 1")
        _require(0 < self.mail_send_timeout_s <= 600, "MAIL_SEND_TIMEOUT_S must be in (0, 600]")
        _require(self.outbox_max_age_s >= 60, "OUTBOX_MAX_AGE_S must be >= 60")
        _require(self.mail_backend != "console" or not self.is_production,
                 "MAIL_BACKEND=console prints links with live tokens: not in production")
        if self.is_production:
            _require(self.lockout_account_threshold <= 100,
                     "LOCKOUT_ACCOUNT_THRESHOLD must be at most 100 in production")
            _require(self.reauth_max_age_s <= 900, "REAUTH_MAX_AGE_S must be at most 900 in production")
            _require(self.session_max_age_s <= 90 * 86400, "SESSION_MAX_AGE_S must be at most 90 days in production")
        _require(1 <= self.db_pool_min <= self.db_pool_max, "DB_POOL_MIN must be >= 1 and <= DB_POOL_MAX")
        _require(self.db_statement_timeout >= 0, "DB_STATEMENT_TIMEOUT must be >= 0")
        _require(0 <= self.db_slow_query_ms <= 3_600_000, "DB_SLOW_QUERY_MS must be 0 (off) to 3600000")
        _require(self.log_level.upper() in LOG_LEVELS, f"LOG_LEVEL {self.log_level!r} is not a log level")
        _require(not self.access_log or self.log_level.upper() in ("TRACE", "DEBUG", "INFO"),
                 "ACCESS_LOG needs LOG_LEVEL INFO (or lower): access lines are INFO")
        _require(bool(self.jwt_key_id) and ":" not in self.jwt_key_id and "," not in self.jwt_key_id,
                 "JWT_KEY_ID must be non-empty and contain no ':' or ','")
        secret = self.jwt_secret.get_secret_value()
        _require(bool(secret) or not self.is_production,
                 f"JWT_SECRET must be set to at least {MIN_SECRET_BYTES} bytes in production")
        # Every environment: the key set refuses a shorter key, and it would do so in each worker.
        _require(len(secret.encode()) >= MIN_SECRET_BYTES,
                 f"JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes (the signing key needs at least that)")
        mfa_key = self.mfa_encryption_key.get_secret_value()
        _require(not mfa_key or len(mfa_key.encode()) >= MIN_SECRET_BYTES,
                 f"MFA_ENCRYPTION_KEY is shorter than {MIN_SECRET_BYTES} bytes")
        if self.is_production:
            _require("*" not in self.origins, "ALLOWED_ORIGINS must list origins, not '*', in production")
        for origin in self.origins:
            parts = urlsplit(origin)
            # An origin is scheme://host[:port] exactly: a browser's Origin never has a path.
            _require(origin == "*" or (parts.scheme in ("http", "https") and bool(parts.netloc)
                                       and not parts.path and not parts.query and not parts.fragment),
                     f"ALLOWED_ORIGINS entry {origin!r} is not an http(s) origin (scheme://host[:port])")
        self._verification_keys = _parse_keys(self)
        self._previous_data_keys = _parse_previous_data_keys(self)
        self._database = _parse_url("DATABASE_URL", parse_database_url, self.database_url)
        self._redis = _parse_url("REDIS_URL", partial(parse_redis_url, cluster=self.redis_cluster), self.redis_url)
        self._smtp = _parse_url("SMTP_URL", parse_smtp_url, self.smtp_url) if self.smtp_url else None
        _check_mail(self)
        self._proxy_networks = _parse_networks(self.trusted_proxies, name="TRUSTED_PROXIES")
        self._metrics_networks = _parse_networks(self.metrics_allowed_cidrs, name="METRICS_ALLOWED_CIDRS")
        self._rate_policies, self._rate_exempt_paths = _read_rate_table(self, _environ())
        if self.is_production:
            _check_production(self)
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
        return _split_csv(self.allowed_origins)

    @property
    def proxy_networks(self) -> tuple[IPNetwork, ...]:
        # Read per request: straight from pydantic's private-attribute dict, not through
        # BaseModel.__getattr__ (Python-level, ~1 us: it showed in the hot path's profile).
        networks: tuple[IPNetwork, ...] = self._private["_proxy_networks"]
        return networks

    @property
    def metrics_networks(self) -> tuple[IPNetwork, ...]:
        return self._metrics_networks

    @property
    def verification_keys(self) -> dict[str, str]:
        """kid -> secret for every key a token may be verified with (current first)."""
        return self._verification_keys

    @property
    def previous_data_keys(self) -> dict[str, str]:
        """MFA_ENCRYPTION_PREVIOUS_KEYS, parsed: key id -> key."""
        return self._previous_data_keys

    @property
    def data_key_secrets(self) -> tuple[str, ...]:
        """The data key ring, current first: MFA_ENCRYPTION_KEY (when set), its previous keys,
        then the JWT keys, from which the data key is derived when it is not set (each use
        derives its own key from these through HKDF, manas360.security.secretbox)."""
        configured = (self.mfa_encryption_key.get_secret_value(), *self._previous_data_keys.values(),
                      *self._verification_keys.values())
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
        source = resolve(os.environ if environ is None else environ, secrets=SECRET_FIELDS + _URL_FIELDS,
                         dotenv=environ is None)
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
    kind = getattr(field.annotation, "__name__", str(field.annotation))
    return f"{shown} is not a valid {kind}"


def markdown_table() -> str:
    """The README's configuration table (variable | default | meaning), from the field descriptions."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    shipped = _shipped_rate_table().get("policies", {})
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra  # _setting gives a dict or None
        shown = extra.get("shown_default") if isinstance(extra, dict) else None
        policy = shipped.get(name.removeprefix("rate_limit_")) if name.startswith("rate_limit_") else None
        if shown is None and policy is not None:
            shown = f"`{policy['limit']}/{policy['window_s']}` (policy table)"
        rows.append(f"| `{name.upper()}` | {shown or _shown_default(field.default)} | {field.description} |")
    return "\n".join(rows) + "\n"


def _shown_default(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return f"`{int(value)}`"
    return f"`{value}`" if value != "" else "empty"


def _shipped_rate_table() -> dict[str, Any]:
    return tomllib.loads(resources.files("manas360.config").joinpath("ratelimits.toml").read_text(encoding="utf-8"))


def _parse_url(name: str, parse: Callable[[str], Any], url: str) -> Any:
    # The parsers' messages never quote the URL: it carries the password.
    try:
        return parse(url)
    except ValueError as exc:
        raise SettingsError(f"{name} {exc}") from None


def _check_mail(s: Settings) -> None:
    base = urlsplit(s.public_base_url)
    # The links in mails: anything but an http(s) origin (javascript:, a bare path) is unsafe.
    _require(base.scheme in ("http", "https") and bool(base.netloc) and not base.query and not base.fragment,
             "PUBLIC_BASE_URL must be an http(s) URL (scheme://host[:port][/path])")
    sender = s.mail_from
    _require("@" in sender and sender.isprintable() and len(sender) <= 320,
             "MAIL_FROM must be an email address (optionally `Name <address>`)")
    _require(s.password_reset_ttl_s >= 60 and s.email_verify_ttl_s >= 60,
             "PASSWORD_RESET_TTL_S and EMAIL_VERIFY_TTL_S must be at least 60")
    _require(0.05 <= s.mail_poll_s <= 3600, "MAIL_POLL_S must be 0.05..3600")
    _require(1 <= s.mail_retry_max_s <= 86400, "MAIL_RETRY_MAX_S must be 1..86400")


PRODUCTION_MIN_BCRYPT_COST = 10
PRODUCTION_MAX_ACCESS_TTL_S = 3600
PRODUCTION_MAX_REFRESH_TTL_S = 90 * 86400
PRODUCTION_MAX_PASSWORD_RESET_TTL_S = 86400
PRODUCTION_MAX_REUSE_GRACE_S = 60
PRODUCTION_MAX_LOCKOUT_THRESHOLD = 20
PRODUCTION_MAX_AUTH_LIMIT = 100


def _check_production(s: Settings) -> None:
    """The refusals of ENV=production beyond the rules of every environment (the list is
    docs/operations.md, "Production checklist"): each one line naming the setting and the
    rule, never its value when it is a secret."""
    _require(bool(s.mfa_encryption_key.get_secret_value()),
             f"MFA_ENCRYPTION_KEY must be set in production (a random key of its own, at least {MIN_SECRET_BYTES} "
             "bytes; otherwise it is derived from JWT_SECRET)")
    for name, value in _production_secrets(s):
        weakness = _weakness(value)
        _require(weakness is None, f"{name} is {weakness}: production needs a random secret of at least "
                                   f"{MIN_SECRET_BYTES} bytes")
    _require(urlsplit(s.public_base_url).scheme == "https",
             "PUBLIC_BASE_URL must be an https:// URL in production (the links in mails carry tokens)")
    _require(s.smtp is not None, "SMTP_URL must be set in production (without it no mail ever leaves the outbox)")
    smtp = s.smtp
    if smtp is not None and smtp.security == "plain" and (smtp.username or smtp.password):
        _require(_is_loopback(smtp.host), f"SMTP_URL sends credentials over plain smtp:// to {smtp.host}: "
                                          "use smtp+starttls:// or smtps:// in production")
    _require(s.bcrypt_cost >= PRODUCTION_MIN_BCRYPT_COST,
             f"BCRYPT_COST must be at least {PRODUCTION_MIN_BCRYPT_COST} in production, not {s.bcrypt_cost}")
    for name, networks in (("TRUSTED_PROXIES", s.proxy_networks), ("METRICS_ALLOWED_CIDRS", s.metrics_networks)):
        for network in networks:
            _require(network.prefixlen > 0, f"{name} must not contain {network} in production (every address)")
    _at_most(s.jwt_access_ttl, PRODUCTION_MAX_ACCESS_TTL_S, "JWT_ACCESS_TTL", "3600 s")
    _at_most(s.jwt_refresh_ttl, PRODUCTION_MAX_REFRESH_TTL_S, "JWT_REFRESH_TTL", "90 days (7776000 s)")
    _at_most(s.password_reset_ttl_s, PRODUCTION_MAX_PASSWORD_RESET_TTL_S, "PASSWORD_RESET_TTL_S", "86400 s")
    _at_most(s.refresh_reuse_grace_s, PRODUCTION_MAX_REUSE_GRACE_S, "REFRESH_REUSE_GRACE_S", "60 s")
    _at_most(s.lockout_threshold, PRODUCTION_MAX_LOCKOUT_THRESHOLD, "LOCKOUT_THRESHOLD", "20")
    auth = s.rate_policies["auth"]
    _require(auth.limit <= PRODUCTION_MAX_AUTH_LIMIT,
             f"the auth rate limit (RATE_LIMIT_AUTH or the policy table) must be at most {PRODUCTION_MAX_AUTH_LIMIT} "
             f"requests per window in production, not {auth.limit}/{auth.window_s}")
    if not s.allow_insecure_transport:
        database = s.database
        _require(database.tls or _is_loopback(database.host),
                 f"DATABASE_URL reaches {database.host} without TLS: add sslmode=require, verify-ca or verify-full "
                 "in production (or set ALLOW_INSECURE_TRANSPORT=true)")
        redis = s.redis
        plain = [host for host, _ in redis.hosts if not _is_loopback(host)] if not (redis.tls or redis.path) else []
        _require(not plain, f"REDIS_URL reaches {plain[0] if plain else ''} without TLS: use rediss:// in production "
                            "(or set ALLOW_INSECURE_TRANSPORT=true)")


def _production_secrets(s: Settings) -> Iterator[tuple[str, str]]:
    """(setting, value) of every secret production holds to the strength rule."""
    yield "JWT_SECRET", s.jwt_secret.get_secret_value()
    for kid, secret in s.verification_keys.items():
        if kid != s.jwt_key_id:
            yield f"JWT_PREVIOUS_KEYS secret for {kid!r}", secret
    yield "MFA_ENCRYPTION_KEY", s.mfa_encryption_key.get_secret_value()
    for kid, secret in s.previous_data_keys.items():
        yield f"MFA_ENCRYPTION_PREVIOUS_KEYS key for {kid!r}", secret
    for name, value in (("METRICS_TOKEN", s.metrics_token), ("SUPERADMIN_PASSWORD", s.superadmin_password)):
        if value.get_secret_value():
            yield name, value.get_secret_value()


def _weakness(secret: str) -> str | None:
    """Why a secret is too weak for production, or None."""
    if not secret:
        return "empty"
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"shorter than {MIN_SECRET_BYTES} bytes"
    if len(set(secret)) == 1:
        return "one repeated character"
    return None


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, localhost, or a unix socket (libpq names its directory: a path)."""
    if host.startswith("/") or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _at_most(value: int, limit: int, name: str, shown: str) -> None:
    _require(value <= limit, f"{name} must be at most {shown} in production, not {value}")


def _parse_previous_data_keys(s: Settings) -> dict[str, str]:
    keys: dict[str, str] = {}
    for entry in _split_csv(s.mfa_encryption_previous_keys.get_secret_value()):
        kid, sep, secret = entry.partition(":")
        _require(bool(sep and kid and secret), "MFA_ENCRYPTION_PREVIOUS_KEYS must be 'kid:key,...'")
        _require(kid not in keys, f"MFA_ENCRYPTION_PREVIOUS_KEYS repeats key id {kid!r}")
        _require(len(secret.encode()) >= MIN_SECRET_BYTES,
                 f"MFA_ENCRYPTION_PREVIOUS_KEYS key for {kid!r} is shorter than {MIN_SECRET_BYTES} bytes")
        keys[kid] = secret
    return keys


def _parse_keys(s: Settings) -> dict[str, str]:
    keys = {s.jwt_key_id: s.jwt_secret.get_secret_value()}
    for entry in _split_csv(s.jwt_previous_keys.get_secret_value()):
        kid, sep, secret = entry.partition(":")
        _require(bool(sep and kid and secret), "JWT_PREVIOUS_KEYS must be 'kid:secret,...'")
        _require(kid not in keys, f"JWT_PREVIOUS_KEYS repeats key id {kid!r}")
        _require(len(secret.encode()) >= MIN_SECRET_BYTES,
                 f"JWT_PREVIOUS_KEYS secret for {kid!r} is shorter than {MIN_SECRET_BYTES} bytes")
        keys[kid] = secret
    return keys


def _parse_networks(value: str, *, name: str) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for entry in _split_csv(value):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise SettingsError(f"{name} entry {entry!r} is not an IP network") from None
    return tuple(networks)


def _read_rate_table(s: Settings, env_vars: Mapping[str, str]) -> tuple[dict[str, RatePolicy], tuple[str, ...]]:
    """The policy table, each policy's limit/window overridden by RATE_LIMIT_<NAME>."""
    where = s.rate_limits_file or "config/ratelimits.toml"
    try:
        if s.rate_limits_file:
            with open(s.rate_limits_file, "rb") as table_file:
                table = tomllib.load(table_file)
        else:
            table = _shipped_rate_table()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"rate-limit policy table {where}: {exc}") from None
    unknown = set(table) - {"exempt", "policies"}
    _require(not unknown, f"{where}: unknown keys {', '.join(sorted(unknown))}")
    exempt = table.get("exempt", [])
    _require(isinstance(exempt, list) and all(isinstance(p, str) and p.startswith("/") for p in exempt),
             f"{where}: exempt must be a list of paths starting with '/'")
    entries = table.get("policies", {})
    _require(isinstance(entries, dict) and all(isinstance(e, dict) for e in entries.values()),
             f"{where}: policies must be tables ([policies.<name>])")
    missing = [name for name in REQUIRED_POLICIES if name not in entries]
    _require(not missing, f"{where}: missing policies {', '.join(missing)}")
    policies = {}
    for name, entry in entries.items():
        # RATE_LIMIT_IPV6_PREFIX is a setting, not the override of a policy "ipv6_prefix".
        _require(name in REQUIRED_POLICIES or f"rate_limit_{name}" not in Settings.model_fields,
                 f"{where}: policy name {name!r} is taken (RATE_LIMIT_{name.upper()} is a setting)")
        override = (getattr(s, f"rate_limit_{name}") if name in REQUIRED_POLICIES
                    else env_vars.get(f"RATE_LIMIT_{name.upper()}", ""))
        policies[name] = _parse_policy(name, entry, override=override, where=where)
    return policies, tuple(p.rstrip("/") or "/" for p in exempt)


def _parse_policy(name: str, entry: dict[str, Any], *, override: str, where: str) -> RatePolicy:
    context = f"{where}: policy {name!r}"
    _require(bool(_POLICY_NAME.match(name)), f"{context}: names are lower-case letters, digits and '_', 32 at most")
    known = {"key", "applies", "routes", "limit", "window_s", "fail_open"}
    _require(set(entry) <= known, f"{context}: unknown keys {', '.join(sorted(set(entry) - known))}")
    limit: object
    window_s: object
    if override:
        limit, window_s = _parse_override(f"RATE_LIMIT_{name.upper()}", override)
    else:
        limit, window_s = entry.get("limit"), entry.get("window_s")
    if not (isinstance(limit, int) and isinstance(window_s, int) and limit >= 1 and window_s >= 1):
        raise SettingsError(f"{context}: limit and window_s must be positive integers")
    # The limiter's Lua arithmetic is exact only while limit * window in ms fits a double.
    _require(limit * window_s * 1000 < 2**53, f"{context}: limit * window_s is too large")
    key, applies = entry.get("key", "ip"), entry.get("applies", "routes")
    _require(key in RATE_KEYS, f"{context}: key must be one of {', '.join(RATE_KEYS)}")
    _require(applies in RATE_SCOPES, f"{context}: applies must be one of {', '.join(RATE_SCOPES)}")
    _require((key == "user") == (applies == "authenticated"),
             f"{context}: key 'user' goes with applies 'authenticated', and only with it")
    _require(not (applies == "every-request" and key == "ip+route"),
             f"{context}: an every-request policy is keyed by ip")
    routes = _parse_routes(context, entry.get("routes", []))
    _require(not routes or applies == "routes", f"{context}: routes are listed only when applies = 'routes'")
    fail_open = entry.get("fail_open", key != "user")
    _require(isinstance(fail_open, bool), f"{context}: fail_open must be true or false")
    return RatePolicy(name=name, limit=limit, window_s=window_s, key=key, applies=applies,
                      routes=routes, fail_open=fail_open)


def _parse_override(env_name: str, value: str) -> tuple[int, int]:
    count, sep, window = value.partition("/")
    try:
        limit, window_s = int(count), int(window)
    except ValueError:
        raise SettingsError(f"{env_name}={value!r} must be '<requests>/<window seconds>'") from None
    _require(bool(sep) and limit >= 1 and window_s >= 1,
             f"{env_name}={value!r} must be '<requests>/<window seconds>', both positive")
    return limit, window_s


def _parse_routes(context: str, specs: Any) -> tuple[tuple[str, str], ...]:
    """("POST", "/api/v1/auth/login") pairs from "METHOD /path" strings (no trailing slash)."""
    _require(isinstance(specs, list), f"{context}: routes must be a list of 'METHOD /path'")
    routes: list[tuple[str, str]] = []
    for spec in specs:
        match = _ROUTE_SPEC.match(spec) if isinstance(spec, str) else None
        if match is None:
            raise SettingsError(f"{context}: route {spec!r} must be 'METHOD /path'")
        routes.append((match.group(1), match.group(2).rstrip("/") or "/"))
    return tuple(routes)


def _split_csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SettingsError(message)


if __name__ == "__main__":
    print(markdown_table(), end="")
