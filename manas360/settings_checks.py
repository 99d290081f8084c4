"""The rules settings are held to beyond each field's own bounds (manas360.settings declares
the fields): the rules across fields, production's refusals, and the parsing of the comma
lists, keys and URLs. Every refusal is a SettingsError with one line that names the setting
and the rule, never a secret's value."""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from manas360.security.signing import KeyConfigError, SigningKey, parse_private_keys

if TYPE_CHECKING:
    from manas360.settings import Settings

MIN_SECRET_BYTES = 32
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class SettingsError(ValueError):
    """A setting is missing, malformed or unsafe for the chosen environment."""


def check_every_environment(self: Settings) -> None:
    """The rules across fields (each field's own bounds are on the field)."""
    _require(
        self.lockout_threshold <= self.lockout_account_threshold,
        "LOCKOUT_ACCOUNT_THRESHOLD must be at least LOCKOUT_THRESHOLD",
    )
    _require(
        self.mail_backend != "console" or not self.is_production,
        "MAIL_BACKEND=console prints links with live tokens: not in production",
    )
    if self.is_production:
        _require(self.lockout_account_threshold <= 100, "LOCKOUT_ACCOUNT_THRESHOLD must be at most 100 in production")
        _require(self.reauth_max_age_s <= 900, "REAUTH_MAX_AGE_S must be at most 900 in production")
        _require(self.session_max_age_s <= 90 * 86400, "SESSION_MAX_AGE_S must be at most 90 days in production")
    _require(self.db_pool_min <= self.db_pool_max, "DB_POOL_MIN must be <= DB_POOL_MAX")
    _require(self.log_level.upper() in LOG_LEVELS, f"LOG_LEVEL {self.log_level!r} is not a log level")
    _require(
        not self.access_log or self.log_level.upper() in ("TRACE", "DEBUG", "INFO"),
        "ACCESS_LOG needs LOG_LEVEL INFO (or lower): access lines are INFO",
    )
    _require(
        bool(self.jwt_key_id) and ":" not in self.jwt_key_id and "," not in self.jwt_key_id,
        "JWT_KEY_ID must be non-empty and contain no ':' or ','",
    )
    secret = self.jwt_secret.get_secret_value()
    _require(
        bool(secret) or not self.is_production or self.jwt_algorithm != "HS256",
        f"JWT_SECRET must be set to at least {MIN_SECRET_BYTES} bytes in production",
    )
    # Every environment: the key set refuses a shorter key, and it would do so in each worker.
    _require(
        not secret or len(secret.encode()) >= MIN_SECRET_BYTES,
        f"JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes (the signing key needs at least that)",
    )
    mfa_key = self.mfa_encryption_key.get_secret_value()
    _require(
        not mfa_key or len(mfa_key.encode()) >= MIN_SECRET_BYTES,
        f"MFA_ENCRYPTION_KEY is shorter than {MIN_SECRET_BYTES} bytes",
    )
    if self.is_production:
        _require("*" not in self.origins, "ALLOWED_ORIGINS must list origins, not '*', in production")
    for origin in self.origins:
        parts = urlsplit(origin)
        # An origin is scheme://host[:port] exactly: a browser's Origin never has a path.
        _require(
            origin == "*"
            or (
                parts.scheme in ("http", "https")
                and bool(parts.netloc)
                and not parts.path
                and not parts.query
                and not parts.fragment
            ),
            f"ALLOWED_ORIGINS entry {origin!r} is not an http(s) origin (scheme://host[:port])",
        )


def parse_url(name: str, parse: Callable[[str], Any], url: str) -> Any:
    # The parsers' messages never quote the URL: it carries the password.
    try:
        return parse(url)
    except ValueError as exc:
        raise SettingsError(f"{name} {exc}") from None


def check_mail(s: Settings) -> None:
    base = urlsplit(s.public_base_url)
    # The links in mails: anything but an http(s) origin (javascript:, a bare path) is unsafe.
    _require(
        base.scheme in ("http", "https") and bool(base.netloc) and not base.query and not base.fragment,
        "PUBLIC_BASE_URL must be an http(s) URL (scheme://host[:port][/path])",
    )
    sender = s.mail_from
    _require(
        "@" in sender and sender.isprintable() and len(sender) <= 320,
        "MAIL_FROM must be an email address (optionally `Name <address>`)",
    )


PRODUCTION_MIN_BCRYPT_COST = 10
PRODUCTION_MAX_ACCESS_TTL_S = 3600
PRODUCTION_MAX_REFRESH_TTL_S = 90 * 86400
PRODUCTION_MAX_PASSWORD_RESET_TTL_S = 86400
PRODUCTION_MAX_REUSE_GRACE_S = 60
PRODUCTION_MAX_LOCKOUT_THRESHOLD = 20
PRODUCTION_MAX_AUTH_LIMIT = 100


def check_production(s: Settings) -> None:
    """The refusals of ENV=production beyond the rules of every environment (the list is
    docs/operations.md, "Production checklist"): each one line naming the setting and the
    rule, never its value when it is a secret."""
    _require(
        bool(s.mfa_encryption_key.get_secret_value()),
        f"MFA_ENCRYPTION_KEY must be set in production (a random key of its own, at least {MIN_SECRET_BYTES} "
        "bytes; otherwise it is derived from JWT_SECRET)",
    )
    for name, value in _production_secrets(s):
        weakness = _weakness(value)
        _require(
            weakness is None,
            f"{name} is {weakness}: production needs a random secret of at least {MIN_SECRET_BYTES} bytes",
        )
    _require(
        urlsplit(s.public_base_url).scheme == "https",
        "PUBLIC_BASE_URL must be an https:// URL in production (the links in mails carry tokens)",
    )
    _require(s.smtp is not None, "SMTP_URL must be set in production (without it no mail ever leaves the outbox)")
    smtp = s.smtp
    if smtp is not None and smtp.security == "plain" and (smtp.username or smtp.password):
        _require(
            _is_loopback(smtp.host),
            f"SMTP_URL sends credentials over plain smtp:// to {smtp.host}: "
            "use smtp+starttls:// or smtps:// in production",
        )
    _require(
        s.bcrypt_cost >= PRODUCTION_MIN_BCRYPT_COST,
        f"BCRYPT_COST must be at least {PRODUCTION_MIN_BCRYPT_COST} in production, not {s.bcrypt_cost}",
    )
    for name, networks in (("TRUSTED_PROXIES", s.proxy_networks), ("METRICS_ALLOWED_CIDRS", s.metrics_networks)):
        for network in networks:
            _require(network.prefixlen > 0, f"{name} must not contain {network} in production (every address)")
    _at_most(s.jwt_access_ttl, PRODUCTION_MAX_ACCESS_TTL_S, "JWT_ACCESS_TTL", "3600 s")
    _at_most(s.jwt_refresh_ttl, PRODUCTION_MAX_REFRESH_TTL_S, "JWT_REFRESH_TTL", "90 days (7776000 s)")
    _at_most(s.password_reset_ttl_s, PRODUCTION_MAX_PASSWORD_RESET_TTL_S, "PASSWORD_RESET_TTL_S", "86400 s")
    _at_most(s.refresh_reuse_grace_s, PRODUCTION_MAX_REUSE_GRACE_S, "REFRESH_REUSE_GRACE_S", "60 s")
    _at_most(s.lockout_threshold, PRODUCTION_MAX_LOCKOUT_THRESHOLD, "LOCKOUT_THRESHOLD", "20")
    auth = s.rate_policies["auth"]
    _require(
        auth.limit <= PRODUCTION_MAX_AUTH_LIMIT,
        f"the auth rate limit (RATE_LIMIT_AUTH or the policy table) must be at most {PRODUCTION_MAX_AUTH_LIMIT} "
        f"requests per window in production, not {auth.limit}/{auth.window_s}",
    )
    if not s.allow_insecure_transport:
        database = s.database
        _require(
            database.tls or _is_loopback(database.host),
            f"DATABASE_URL reaches {database.host} without TLS: add sslmode=require, verify-ca or verify-full "
            "in production (or set ALLOW_INSECURE_TRANSPORT=true)",
        )
        redis = s.redis
        plain = [host for host, _ in redis.hosts if not _is_loopback(host)] if not (redis.tls or redis.path) else []
        _require(
            not plain,
            f"REDIS_URL reaches {plain[0] if plain else ''} without TLS: use rediss:// in production "
            "(or set ALLOW_INSECURE_TRANSPORT=true)",
        )


def _production_secrets(s: Settings) -> Iterator[tuple[str, str]]:
    """(setting, value) of every secret production holds to the strength rule."""
    if s.jwt_algorithm == "HS256" or s.jwt_secret.get_secret_value():
        yield "JWT_SECRET", s.jwt_secret.get_secret_value()
    for name, key in s.introspection_keys_by_name.items():
        yield f"INTROSPECTION_KEYS key for {name!r}", key.decode()
    for position, webhook_secret in enumerate(s.webhook_secrets, start=1):
        yield f"WEBHOOK_SECRET secret {position}", webhook_secret.decode("latin-1")
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


def parse_previous_data_keys(s: Settings) -> dict[str, str]:
    keys: dict[str, str] = {}
    for entry in split_csv(s.mfa_encryption_previous_keys.get_secret_value()):
        kid, sep, secret = entry.partition(":")
        _require(bool(sep and kid and secret), "MFA_ENCRYPTION_PREVIOUS_KEYS must be 'kid:key,...'")
        _require(kid not in keys, f"MFA_ENCRYPTION_PREVIOUS_KEYS repeats key id {kid!r}")
        _require(
            len(secret.encode()) >= MIN_SECRET_BYTES,
            f"MFA_ENCRYPTION_PREVIOUS_KEYS key for {kid!r} is shorter than {MIN_SECRET_BYTES} bytes",
        )
        keys[kid] = secret
    return keys


def parse_keys(s: Settings) -> dict[str, str]:
    if not s.jwt_secret.get_secret_value():
        return {}  # production with EdDSA/ES256 and no JWT_SECRET: no HMAC keys at all
    keys = {s.jwt_key_id: s.jwt_secret.get_secret_value()}
    for entry in split_csv(s.jwt_previous_keys.get_secret_value()):
        kid, sep, secret = entry.partition(":")
        _require(bool(sep and kid and secret), "JWT_PREVIOUS_KEYS must be 'kid:secret,...'")
        _require(kid not in keys, f"JWT_PREVIOUS_KEYS repeats key id {kid!r}")
        _require(
            len(secret.encode()) >= MIN_SECRET_BYTES,
            f"JWT_PREVIOUS_KEYS secret for {kid!r} is shorter than {MIN_SECRET_BYTES} bytes",
        )
        keys[kid] = secret
    return keys


def parse_signing_keys(s: Settings) -> tuple[SigningKey, ...]:
    """JWT_PRIVATE_KEYS for an asymmetric JWT_ALGORITHM; refused with HS256 (a key set there
    would sign nothing: an operator meant something else)."""
    value = s.jwt_private_keys.get_secret_value().strip()
    if s.jwt_algorithm == "HS256":
        _require(not value, "JWT_PRIVATE_KEYS is set but JWT_ALGORITHM is HS256: set JWT_ALGORITHM=EdDSA or ES256")
        return ()
    _require(bool(value), f"JWT_ALGORITHM={s.jwt_algorithm} needs JWT_PRIVATE_KEYS (`manas360 keys generate`)")
    try:
        keys = parse_private_keys(value)
    except KeyConfigError as exc:
        raise SettingsError(f"JWT_PRIVATE_KEYS {exc}") from None
    for key in keys:
        _require(
            key.alg == s.jwt_algorithm,
            f"JWT_PRIVATE_KEYS key {key.kid!r} is an {key.alg} key, not {s.jwt_algorithm} (JWT_ALGORITHM)",
        )
    return tuple(keys)


def parse_introspection_keys(value: str) -> dict[str, bytes]:
    """INTROSPECTION_KEYS: `name:key,...`, each key at least MIN_SECRET_BYTES bytes."""
    keys: dict[str, bytes] = {}
    for entry in split_csv(value):
        name, sep, key = entry.partition(":")
        _require(
            bool(sep and _SERVICE_NAME.match(name) and key),
            "INTROSPECTION_KEYS must be 'name:key,...' (names: letters, digits, '-', '_')",
        )
        _require(name not in keys, f"INTROSPECTION_KEYS repeats the name {name!r}")
        _require(
            len(key.encode()) >= MIN_SECRET_BYTES,
            f"INTROSPECTION_KEYS key for {name!r} is shorter than {MIN_SECRET_BYTES} bytes",
        )
        keys[name] = key.encode()
    return keys


def parse_webhook(s: Settings) -> tuple[bytes, ...]:
    """WEBHOOK_URL and WEBHOOK_SECRET: an http(s) URL and its `whsec_` secrets, or neither."""
    url, value = s.webhook_url.strip(), s.webhook_secret.get_secret_value().split()
    if not url:
        _require(not value, "WEBHOOK_SECRET is set but WEBHOOK_URL is not")
        return ()
    parts = urlsplit(url)
    _require(
        parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment,
        "WEBHOOK_URL must be an http(s) URL",
    )
    _require(parts.scheme == "https" or not s.is_production, "WEBHOOK_URL must be an https:// URL in production")
    _require(bool(value), "WEBHOOK_URL needs WEBHOOK_SECRET (`whsec_` and base64 of random bytes)")
    decoded_secrets: list[bytes] = []
    for position, secret in enumerate(value, start=1):
        try:
            encoded = secret.removeprefix("whsec_")
            decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except ValueError:
            decoded = b""
        _require(
            secret.startswith("whsec_") and len(decoded) >= 16,
            f"WEBHOOK_SECRET secret {position} must be `whsec_` followed by base64 of random bytes",
        )
        _require(
            len(decoded) >= MIN_SECRET_BYTES or not s.is_production,
            f"WEBHOOK_SECRET secret {position} is shorter than {MIN_SECRET_BYTES} bytes: not in production",
        )
        decoded_secrets.append(decoded)
    return tuple(decoded_secrets)


class WebAuthnParty(NamedTuple):
    """The passkeys' relying party, defaults applied (manas360.services.auth.passkeys)."""

    rp_id: str
    rp_name: str
    origins: tuple[str, ...]


def parse_webauthn(s: Settings) -> WebAuthnParty:
    """WEBAUTHN_RP_ID (default: the host of PUBLIC_BASE_URL), WEBAUTHN_RP_NAME and
    WEBAUTHN_ORIGINS (default: PUBLIC_BASE_URL's origin). Every origin is an http(s) origin and
    the id a bare host name; production also wants https origins whose host is the id or ends
    in `.<id>`, with a dotted id unless it is the host itself (a browser refuses a passkey whose
    RP ID is not the page's host or a registrable suffix of it: such settings would only fail
    at the first ceremony)."""
    base = urlsplit(s.public_base_url)
    origins = split_csv(s.webauthn_origins) or (f"{base.scheme}://{base.netloc}",)
    rp_id = s.webauthn_rp_id.strip().lower() or (base.hostname or "")
    _require(
        bool(rp_id) and re.fullmatch(r"[a-z0-9.-]+|\[?[0-9a-f:.]+\]?", rp_id) is not None and rp_id.strip(".") == rp_id,
        "WEBAUTHN_RP_ID must be a host name (no scheme, port or path)",
    )
    for origin in origins:
        parts = urlsplit(origin)
        _require(
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and not parts.path
            and not parts.query
            and not parts.fragment,
            f"WEBAUTHN_ORIGINS entry {origin!r} is not an http(s) origin (scheme://host[:port])",
        )
        if s.is_production:
            _require(parts.scheme == "https", f"WEBAUTHN_ORIGINS entry {origin!r} must be https:// in production")
            host = (parts.hostname or "").lower()
            _require(
                host == rp_id or (host.endswith("." + rp_id) and "." in rp_id),
                f"WEBAUTHN_RP_ID {rp_id!r} is neither the host of WEBAUTHN_ORIGINS entry {origin!r} nor a "
                "registrable suffix of it",
            )
    return WebAuthnParty(rp_id=rp_id, rp_name=s.webauthn_rp_name, origins=tuple(o.rstrip("/") for o in origins))


def parse_networks(value: str, *, name: str) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for entry in split_csv(value):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise SettingsError(f"{name} entry {entry!r} is not an IP network") from None
    return tuple(networks)


def split_csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SettingsError(message)
