"""Typed settings: defaults from config/defaults.toml, overridden by environment variables.

Loaded and validated once at start (`load_settings()`); the same object feeds the app,
Tortoise/aerich and the scripts. An invalid value raises `SettingsError` with a one-line,
human-readable message that the CLI prints before exiting non-zero.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from manas360.database_url import DatabaseURL, parse_database_url
from manas360.store.url import RedisConfig, parse_redis_url

ENVIRONMENTS = ("development", "test", "production")
MIN_SECRET_BYTES = 32


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


@dataclass(frozen=True, slots=True)
class Settings:
    env: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2

    database_url: str = "postgres://root@127.0.0.1:5432/manas360"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = False
    redis_prefix: str = "m360:"
    redis_socket_timeout_s: float = 1.0
    redis_connect_timeout_s: float = 1.0
    redis_max_connections: int = 256

    jwt_secret: str = ""
    jwt_key_id: str = "k1"
    jwt_previous_keys: str = ""
    jwt_issuer: str = "manas360"
    jwt_audience: str = "manas360-api"
    jwt_access_ttl: int = 900
    jwt_refresh_ttl: int = 604800

    bcrypt_cost: int = 12
    refresh_reuse_grace_s: int = 10
    max_body_bytes: int = 65536
    hsts: bool = False

    lockout_threshold: int = 5
    lockout_window_s: int = 900
    lockout_duration_s: int = 900

    # "<requests>/<window seconds>"; empty: the limit and window of the policy table.
    rate_limit_global: str = ""
    rate_limit_auth: str = ""
    rate_limit_api: str = ""
    # The policy table; empty: config/ratelimits.toml shipped with the package.
    rate_limits_file: str = ""

    allowed_origins: str = ""
    trusted_proxies: str = ""
    metrics_allowed_cidrs: str = ""  # not even loopback: a reverse proxy on the host is loopback
    metrics_token: str = ""

    db_pool_min: int = 2
    db_pool_max: int = 20
    db_statement_timeout: int = 30000
    db_slow_query_ms: int = 500

    request_timeout_s: int = 30
    keep_alive_timeout_s: int = 5
    graceful_shutdown_timeout_s: int = 15

    superadmin_email: str = ""
    superadmin_password: str = ""

    log_level: str = "INFO"
    log_json: str = "auto"
    access_log: bool = False

    # Derived once in __post_init__-free style by load_settings(); see properties below.
    _derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def origins(self) -> tuple[str, ...]:
        return _split_csv(self.allowed_origins)

    @property
    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return self._derived["proxy_networks"]

    @property
    def metrics_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return self._derived["metrics_networks"]

    @property
    def verification_keys(self) -> dict[str, str]:
        """kid -> secret for every key a token may be verified with (current first)."""
        return self._derived["verification_keys"]

    @property
    def database(self) -> DatabaseURL:
        """DATABASE_URL, parsed: what every PostgreSQL connection uses."""
        return self._derived["database"]

    @property
    def redis(self) -> RedisConfig:
        """REDIS_URL (with REDIS_CLUSTER), parsed: what every Redis connection uses."""
        return self._derived["redis"]

    @property
    def rate_policies(self) -> dict[str, RatePolicy]:
        return self._derived["rate_policies"]

    @property
    def rate_exempt_paths(self) -> tuple[str, ...]:
        """Paths under no rate-limit policy: each one and everything below it."""
        return self._derived["rate_exempt_paths"]

    def __repr__(self) -> str:  # never print secrets
        shown = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        for name in ("jwt_secret", "jwt_previous_keys", "superadmin_password", "metrics_token"):
            shown[name] = "***" if shown[name] else ""
        return f"Settings({shown})"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build and validate settings from config/defaults.toml and `environ` (default os.environ).

    Outside production an empty JWT_SECRET becomes a random secret, exported to os.environ
    so that worker processes spawned later verify each other's tokens.
    """
    env_vars = os.environ if environ is None else environ
    values = _read_defaults()
    for f in fields(Settings):
        if f.name.startswith("_"):
            continue
        raw = env_vars.get(f.name.upper())
        if raw is not None:
            values[f.name] = _coerce(f.name, f.type, raw)
    unknown = set(values) - {f.name for f in fields(Settings)}
    if unknown:
        raise SettingsError(f"unknown settings in config/defaults.toml: {', '.join(sorted(unknown))}")
    if not values.get("jwt_secret") and values.get("env") != "production":
        values["jwt_secret"] = secrets.token_urlsafe(48)
        if environ is None:
            os.environ["JWT_SECRET"] = values["jwt_secret"]
    settings = Settings(**values)
    _validate(settings)
    policies, exempt = _read_rate_table(settings, env_vars)
    settings._derived.update(
        database=_parse_url("DATABASE_URL", parse_database_url, settings.database_url),
        redis=_parse_url("REDIS_URL", partial(parse_redis_url, cluster=settings.redis_cluster), settings.redis_url),
        proxy_networks=_parse_networks(settings.trusted_proxies, name="TRUSTED_PROXIES"),
        metrics_networks=_parse_networks(settings.metrics_allowed_cidrs, name="METRICS_ALLOWED_CIDRS"),
        verification_keys=_parse_keys(settings),
        rate_policies=policies,
        rate_exempt_paths=exempt,
    )
    return settings


def _read_defaults() -> dict[str, Any]:
    text = resources.files("manas360.config").joinpath("defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _coerce(name: str, kind: Any, raw: str) -> Any:
    kind = kind if isinstance(kind, str) else kind.__name__
    raw = raw.strip()
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(f"{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw


def _validate(s: Settings) -> None:
    if s.env not in ENVIRONMENTS:
        raise SettingsError(f"ENV must be one of {', '.join(ENVIRONMENTS)}, not {s.env!r}")
    _require(1 <= s.port <= 65535, f"PORT must be 1..65535, not {s.port}")
    _require(1 <= s.workers <= 256, f"WORKERS must be 1..256, not {s.workers}")
    _require(bool(s.redis_prefix), "REDIS_PREFIX must not be empty")
    _require(4 <= s.bcrypt_cost <= 31, f"BCRYPT_COST must be 4..31, not {s.bcrypt_cost}")
    _require(s.jwt_access_ttl > 0 and s.jwt_refresh_ttl > 0, "JWT_ACCESS_TTL and JWT_REFRESH_TTL must be positive")
    _require(s.refresh_reuse_grace_s >= 0, "REFRESH_REUSE_GRACE_S must be >= 0")
    _require(1024 <= s.max_body_bytes <= 64 * 1024 * 1024, "MAX_BODY_BYTES must be 1024..67108864")
    _require(s.lockout_threshold >= 1 and s.lockout_window_s >= 1 and s.lockout_duration_s >= 1,
             "LOCKOUT_THRESHOLD, LOCKOUT_WINDOW_S and LOCKOUT_DURATION_S must be positive")
    _require(1 <= s.db_pool_min <= s.db_pool_max, "DB_POOL_MIN must be >= 1 and <= DB_POOL_MAX")
    _require(s.db_statement_timeout >= 0, "DB_STATEMENT_TIMEOUT must be >= 0")
    _require(0 <= s.db_slow_query_ms <= 3_600_000, "DB_SLOW_QUERY_MS must be 0 (off) to 3600000")
    _require(s.log_level.upper() in ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"),
             f"LOG_LEVEL {s.log_level!r} is not a log level")
    _require(not s.access_log or s.log_level.upper() in ("TRACE", "DEBUG", "INFO"),
             "ACCESS_LOG needs LOG_LEVEL INFO (or lower): access lines are INFO")
    _require(bool(s.jwt_key_id) and ":" not in s.jwt_key_id and "," not in s.jwt_key_id,
             "JWT_KEY_ID must be non-empty and contain no ':' or ','")
    if s.is_production:
        _require(len(s.jwt_secret.encode()) >= MIN_SECRET_BYTES,
                 f"JWT_SECRET must be set to at least {MIN_SECRET_BYTES} bytes in production")
        _require("*" not in s.origins, "ALLOWED_ORIGINS must list origins, not '*', in production")
    for origin in s.origins:
        parts = urlsplit(origin)
        # An origin is scheme://host[:port] exactly: a browser's Origin never has a path.
        _require(origin == "*" or (parts.scheme in ("http", "https") and bool(parts.netloc)
                                   and not parts.path and not parts.query and not parts.fragment),
                 f"ALLOWED_ORIGINS entry {origin!r} is not an http(s) origin (scheme://host[:port])")


def _parse_url(name: str, parse: Callable[[str], Any], url: str) -> Any:
    # The parsers' messages never quote the URL: it carries the password.
    try:
        return parse(url)
    except ValueError as exc:
        raise SettingsError(f"{name} {exc}") from None


def _parse_keys(s: Settings) -> dict[str, str]:
    keys = {s.jwt_key_id: s.jwt_secret}
    for entry in _split_csv(s.jwt_previous_keys):
        kid, sep, secret = entry.partition(":")
        _require(bool(sep and kid and secret), "JWT_PREVIOUS_KEYS must be 'kid:secret,...'")
        _require(kid not in keys, f"JWT_PREVIOUS_KEYS repeats key id {kid!r}")
        if s.is_production:
            _require(len(secret.encode()) >= MIN_SECRET_BYTES,
                     f"JWT_PREVIOUS_KEYS secret for {kid!r} is shorter than {MIN_SECRET_BYTES} bytes")
        keys[kid] = secret
    return keys


def _parse_networks(value: str, *, name: str):
    networks = []
    for entry in _split_csv(value):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise SettingsError(f"{name} entry {entry!r} is not an IP network") from None
    return tuple(networks)


def _read_rate_table(s: Settings, env_vars) -> tuple[dict[str, RatePolicy], tuple[str, ...]]:
    """The policy table, each policy's limit/window overridden by RATE_LIMIT_<NAME>."""
    where = s.rate_limits_file or "config/ratelimits.toml"
    try:
        if s.rate_limits_file:
            with open(s.rate_limits_file, "rb") as table_file:
                table = tomllib.load(table_file)
        else:
            table = tomllib.loads(resources.files("manas360.config").joinpath("ratelimits.toml").read_text(encoding="utf-8"))
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
        override = (getattr(s, f"rate_limit_{name}") if name in REQUIRED_POLICIES
                    else env_vars.get(f"RATE_LIMIT_{name.upper()}", ""))
        policies[name] = _parse_policy(name, entry, override=override, where=where)
    return policies, tuple(p.rstrip("/") or "/" for p in exempt)


def _parse_policy(name: str, entry: dict[str, Any], *, override: str, where: str) -> RatePolicy:
    context = f"{where}: policy {name!r}"
    _require(bool(_POLICY_NAME.match(name)), f"{context}: names are lower-case letters, digits and '_', 32 at most")
    known = {"key", "applies", "routes", "limit", "window_s", "fail_open"}
    _require(set(entry) <= known, f"{context}: unknown keys {', '.join(sorted(set(entry) - known))}")
    if override:
        limit, window_s = _parse_override(f"RATE_LIMIT_{name.upper()}", override)
    else:
        limit, window_s = entry.get("limit"), entry.get("window_s")
    _require(isinstance(limit, int) and isinstance(window_s, int) and limit >= 1 and window_s >= 1,
             f"{context}: limit and window_s must be positive integers")
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
    routes = []
    for spec in specs:
        match = _ROUTE_SPEC.match(spec) if isinstance(spec, str) else None
        _require(match is not None, f"{context}: route {spec!r} must be 'METHOD /path'")
        routes.append((match.group(1), match.group(2).rstrip("/") or "/"))
    return tuple(routes)


def _split_csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SettingsError(message)
