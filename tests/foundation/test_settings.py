"""Settings: defaults, environment overrides, refusals of unsafe values, secrets kept out of
sight, and the README table generated from the field descriptions."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from manas360.settings import SECRET_FIELDS, Settings, SettingsError, load_settings
from scripts.settings_table import markdown_table
from tests.fixtures.environment import production_environ

STRONG = "strong-signing-secret-0123456789-abcdef"
OLD = "old-signing-secret-9876543210-zyxwvuts"
PRODUCTION = production_environ(JWT_SECRET=STRONG)
README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_match_the_configuration_contract():
    s = load_settings({})
    assert (s.env, s.host, s.port, s.workers) == ("development", "127.0.0.1", 8000, 2)
    assert s.database_url == "postgres://root@127.0.0.1:5432/manas360"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.redis_prefix == "m360:"
    assert (s.jwt_key_id, s.jwt_access_ttl, s.jwt_refresh_ttl) == ("k1", 900, 604800)
    assert (s.bcrypt_cost, s.refresh_reuse_grace_s, s.max_body_bytes, s.hsts) == (12, 10, 65536, False)
    assert (s.lockout_threshold, s.lockout_window_s, s.lockout_duration_s) == (5, 900, 900)
    assert {n: (p.limit, p.window_s) for n, p in s.rate_policies.items()} == {
        "global": (100, 900),
        "auth": (5, 900),
        "passkey_options": (60, 900),
        "api": (1000, 3600),
    }
    assert s.webauthn == ("127.0.0.1", "MANAS360", ("http://127.0.0.1:8000",))
    assert s.rate_limit_ipv6_prefix == 64
    assert (s.db_pool_min, s.db_pool_max, s.db_statement_timeout, s.db_slow_query_ms) == (2, 20, 30000, 500)
    assert s.log_level == "INFO" and s.access_log is False


def test_development_gets_a_random_secret_long_enough_to_sign():
    a, b = load_settings({}), load_settings({})
    assert len(a.jwt_secret) >= 32 and a.jwt_secret != b.jwt_secret


def test_environment_overrides_every_kind_of_value():
    s = load_settings(
        {
            "PORT": "9001",
            "HSTS": "1",
            "REDIS_SOCKET_TIMEOUT_S": "0.25",
            "ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "TRUSTED_PROXIES": "10.0.0.0/8,::1",
            "JWT_PREVIOUS_KEYS": f"k0:{OLD}",
            "RATE_LIMIT_AUTH": "7/60",
            "RATE_LIMIT_IPV6_PREFIX": "56",
        }
    )
    assert s.port == 9001 and s.hsts is True and s.redis_socket_timeout_s == 0.25
    assert s.origins == ("https://a.example", "https://b.example")
    assert [str(n) for n in s.proxy_networks] == ["10.0.0.0/8", "::1/128"]
    assert list(s.verification_keys) == ["k1", "k0"] and s.verification_keys["k0"] == OLD
    assert s.rate_policies["auth"].limit == 7 and s.rate_policies["auth"].window_s == 60
    assert s.rate_limit_ipv6_prefix == 56


@pytest.mark.parametrize(
    "environ, fragment",
    [
        ({"LOCKOUT_THRESHOLD": "5", "LOCKOUT_ACCOUNT_THRESHOLD": "4"}, "LOCKOUT_ACCOUNT_THRESHOLD must be at least"),
        ({"REAUTH_MAX_AGE_S": "0"}, "REAUTH_MAX_AGE_S"),
        ({"MAIL_PER_ACCOUNT_HOURLY": "0"}, "MAIL_PER_ACCOUNT_HOURLY"),
        ({"ADMIN_REQUIRE_MFA": "maybe"}, "ADMIN_REQUIRE_MFA"),
        ({"JWT_SECRET": "short"}, "JWT_SECRET is shorter than 32 bytes"),
        ({"ENV": "test", "JWT_SECRET": "short"}, "JWT_SECRET is shorter than 32 bytes"),
        ({"JWT_PREVIOUS_KEYS": "k0:weak"}, "JWT_PREVIOUS_KEYS secret for 'k0' is shorter than 32 bytes"),
        ({"ENV": "staging"}, "^ENV='staging' is not one of development, test, production$"),
        ({"PORT": "eighty"}, "^PORT='eighty' is not a valid int$"),
        ({"PORT": "70000"}, "PORT"),
        ({"HSTS": "maybe"}, "^HSTS='maybe' is not a valid bool$"),
        ({"REDIS_SOCKET_TIMEOUT_S": "soon"}, "^REDIS_SOCKET_TIMEOUT_S='soon' is not a valid float$"),
        ({"RATE_LIMIT_API": "1000"}, "RATE_LIMIT_API"),
        ({"RATE_LIMIT_API": "0/60"}, "RATE_LIMIT_API"),
        ({"RATE_LIMIT_IPV6_PREFIX": "31"}, "^RATE_LIMIT_IPV6_PREFIX must be 32..128, not 31$"),
        ({"RATE_LIMIT_IPV6_PREFIX": "129"}, "^RATE_LIMIT_IPV6_PREFIX must be 32..128, not 129$"),
        ({"RATE_LIMIT_IPV6_PREFIX": "/64"}, "^RATE_LIMIT_IPV6_PREFIX='/64' is not a valid int$"),
        ({"TRUSTED_PROXIES": "not-a-cidr"}, "TRUSTED_PROXIES"),
        ({"JWT_PREVIOUS_KEYS": "no-colon"}, "JWT_PREVIOUS_KEYS"),
        ({"DB_POOL_MIN": "30", "DB_POOL_MAX": "20"}, "DB_POOL_MIN"),
        ({"BCRYPT_COST": "3"}, "BCRYPT_COST"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://h/db?sslmode=sometimes"}, "DATABASE_URL sslmode"),
        ({"DATABASE_URL": "postgres://h/db?application_name=x"}, "DATABASE_URL query parameter 'application_name'"),
        ({"DATABASE_URL": "postgres://h/db?sslrootcert=/etc/hostname"}, "DATABASE_URL sslrootcert needs sslmode"),
        ({"DATABASE_URL": "postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent.crt"}, "does not exist"),
        ({"DATABASE_URL": "postgres://h:port/db"}, "DATABASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must start with"),
        ({"REDIS_URL": " "}, "REDIS_URL is empty"),
        ({"REDIS_URL": "redis://127.0.0.1:6379?ssl_ca_certs=/etc/hostname"}, "REDIS_URL ssl_ca_certs .* not rediss"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0?timeout=1"}, "REDIS_URL query parameter 'timeout'"),
        ({"REDIS_URL": "unix:///run/redis.sock", "REDIS_CLUSTER": "1"}, "REDIS_URL a unix socket"),
        ({"ALLOWED_ORIGINS": "ftp://x"}, "ALLOWED_ORIGINS"),
        ({"ACCESS_LOG": "sometimes"}, "ACCESS_LOG"),
        ({"DB_SLOW_QUERY_MS": "-1"}, "DB_SLOW_QUERY_MS"),
        ({"DB_SLOW_QUERY_MS": "fast"}, "DB_SLOW_QUERY_MS"),
        ({"ACCESS_LOG": "1", "LOG_LEVEL": "WARNING"}, "ACCESS_LOG needs LOG_LEVEL INFO"),
        ({"WEBAUTHN_ORIGINS": "https://app.example.com/login"}, "^WEBAUTHN_ORIGINS entry .* is not an http"),
        ({"WEBAUTHN_ORIGINS": "app.example.com"}, "^WEBAUTHN_ORIGINS entry 'app.example.com' is not an http"),
        ({"WEBAUTHN_RP_ID": "https://app.example.com"}, "^WEBAUTHN_RP_ID must be a host name"),
        ({"WEBAUTHN_RP_ID": "example.com:443"}, "^WEBAUTHN_RP_ID must be a host name"),
        ({"WEBAUTHN_RP_NAME": ""}, "WEBAUTHN_RP_NAME"),
    ],
)
def test_invalid_or_unsafe_values_are_refused(environ, fragment):
    with pytest.raises(SettingsError, match=fragment) as refused:
        load_settings(environ)
    assert "\n" not in str(refused.value)


def test_names_are_case_insensitive_and_values_trimmed_and_a_blank_flag_is_off():
    s = load_settings({"port": " 9001 ", "Env": "test", "HSTS": "", "ACCESS_LOG": "yes"})
    assert (s.port, s.env, s.hsts, s.access_log) == (9001, "test", False, True)


def test_secrets_never_show_in_repr_str_dumps_or_logs(caplog):
    values = {
        "JWT_SECRET": "j" * 40,
        "JWT_PREVIOUS_KEYS": f"k0:{OLD}",
        "SUPERADMIN_PASSWORD": "pw-SeCrEt-7c1",
        "METRICS_TOKEN": "tok-SeCrEt-4f9a0c",
    }
    s = load_settings(values)
    assert all(isinstance(getattr(s, name), type(s.jwt_secret)) for name in SECRET_FIELDS)
    with caplog.at_level(logging.INFO):
        logging.getLogger("settings-test").info("settings: %s %r", s, s)
    shown = repr(s) + str(s) + f"{s}" + s.model_dump_json() + str(s.model_dump()) + caplog.text
    for value in ("j" * 40, OLD, "pw-SeCrEt-7c1", "tok-SeCrEt-4f9a0c"):
        assert value not in shown
    assert s.jwt_secret.get_secret_value() == "j" * 40 and s.verification_keys["k0"] == OLD


def test_passwords_in_the_urls_never_show_in_repr_or_str():
    s = load_settings(
        {
            "DATABASE_URL": "postgres://app:db-SeCrEt-91@db.example:5432/m360",
            "REDIS_URL": "redis://default:rd-SeCrEt-37@cache.example:6379/2",
        }
    )
    shown = repr(s) + str(s)
    assert "db-SeCrEt-91" not in shown and "rd-SeCrEt-37" not in shown
    assert "postgres://app:***@db.example:5432/m360" in shown and "redis://default:***@cache.example:6379/2" in shown
    assert s.database.password == "db-SeCrEt-91"


def test_a_refused_previous_key_list_never_quotes_its_secrets():
    with pytest.raises(SettingsError) as refused:
        load_settings({"JWT_PREVIOUS_KEYS": "k0:" + "x" * 40 + ",k0:" + "y" * 40})
    assert "x" * 40 not in str(refused.value) and "y" * 40 not in str(refused.value)


def test_every_field_is_described_and_the_readme_table_is_the_generated_one():
    assert all(field.description for field in Settings.model_fields.values())
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("| variable | default | meaning |")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    assert "\n".join(lines[start:end]) + "\n" == markdown_table(), (
        "README.md's configuration table is stale: regenerate it with `python -m scripts.settings_table`"
    )


def test_the_table_shows_each_variable_once_with_the_contract_defaults():
    rows = {row.split(" | ")[0].strip("| `"): row.split(" | ")[1] for row in markdown_table().splitlines()[2:]}
    assert len(rows) == len(Settings.model_fields)
    assert (rows["ENV"], rows["PORT"], rows["REDIS_PREFIX"], rows["HSTS"]) == (
        "`development`",
        "`8000`",
        "`m360:`",
        "`0`",
    )
    assert rows["RATE_LIMIT_GLOBAL"].startswith("`100/900`") and rows["RATE_LIMIT_API"].startswith("`1000/3600`")
    assert rows["JWT_SECRET"] == "random per start outside production" and rows["SUPERADMIN_PASSWORD"] == "unset"


def test_both_urls_are_parsed_once_with_decoded_credentials_and_tls():
    s = load_settings(
        {
            "DATABASE_URL": "postgresql://app:p%40ss%25w%3Ard%2F1@db.internal:6432/m360?sslmode=require",
            "REDIS_URL": "rediss://:p%40ss@cache.internal:6380/2?ssl_cert_reqs=required",
        }
    )
    assert (s.database.host, s.database.port, s.database.user, s.database.password) == (
        "db.internal",
        6432,
        "app",
        "p@ss%w:rd/1",
    )
    assert s.database.connect_kwargs()["ssl"] == "require" and s.database.database == "m360"
    assert (s.redis.tls, s.redis.hosts, s.redis.db, s.redis.password) == (True, (("cache.internal", 6380),), 2, "p@ss")
    assert "p@ss" not in repr(s.database) + repr(s.redis)


def test_production_accepts_a_safe_configuration():
    s = load_settings(
        {
            **PRODUCTION,
            "JWT_PREVIOUS_KEYS": f"k0:{OLD}",
            "METRICS_TOKEN": "scrape-" + "t0k3n" * 6,
            "SUPERADMIN_PASSWORD": "a superadmin passphrase of 32+ bytes",
            "BCRYPT_COST": "10",
            "TRUSTED_PROXIES": "10.0.0.0/8",
            "METRICS_ALLOWED_CIDRS": "127.0.0.1/32",
            "JWT_ACCESS_TTL": "3600",
            "JWT_REFRESH_TTL": str(90 * 86400),
            "PASSWORD_RESET_TTL_S": "86400",
            "REFRESH_REUSE_GRACE_S": "60",
            "LOCKOUT_THRESHOLD": "20",
            "LOCKOUT_ACCOUNT_THRESHOLD": "100",
            "RATE_LIMIT_AUTH": "100/60",
            "REAUTH_MAX_AGE_S": "900",
            "SESSION_MAX_AGE_S": str(90 * 86400),
        }
    )
    assert s.is_production and STRONG not in repr(s) and s.smtp is not None
    for url in (
        "postgres://app@localhost/m360",
        "postgres://app@[::1]:5432/m360",
        "postgres://app@%2Frun%2Fpg/m360",
        "postgres://app@db.internal/m360?sslmode=require",
        "postgres://app@127.0.0.2/m360",
    ):
        assert load_settings({**PRODUCTION, "DATABASE_URL": url}).database_url == url
    for url in (
        "rediss://cache.internal:6380/0",
        "unix:///run/redis.sock",
        "redis://localhost:6379/1",
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
        "redis://[::1]:6379/0",
    ):
        assert load_settings({**PRODUCTION, "REDIS_URL": url}).redis_url == url
    insecure = {
        **PRODUCTION,
        "DATABASE_URL": "postgres://app@db.internal/m360",
        "REDIS_URL": "redis://cache:6379/0",
        "ALLOW_INSECURE_TRANSPORT": "true",
    }
    assert load_settings(insecure).allow_insecure_transport is True
    # Credentials over plain smtp:// are fine to a relay on the same host; TLS forms anywhere.
    for smtp in ("smtp://user:pass@127.0.0.1:25", "smtp://mail.example.com:25", "smtps://user:pass@mail.example.com"):
        assert load_settings({**PRODUCTION, "SMTP_URL": smtp}).smtp is not None


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"JWT_SECRET": ""}, "^JWT_SECRET must be set"),
        ({"JWT_SECRET": "tiny-secret"}, "^JWT_SECRET is shorter than 32 bytes"),
        ({"JWT_SECRET": "s" * 40}, "^JWT_SECRET is one repeated character: production needs a random secret"),
        ({"JWT_PREVIOUS_KEYS": "k0:weak"}, "^JWT_PREVIOUS_KEYS secret for 'k0' is shorter than 32 bytes"),
        ({"JWT_PREVIOUS_KEYS": f"k0:{OLD},k9:" + "9" * 40}, "^JWT_PREVIOUS_KEYS secret for 'k9' is one repeated"),
        ({"MFA_ENCRYPTION_KEY": ""}, "^MFA_ENCRYPTION_KEY must be set in production"),
        ({"MFA_ENCRYPTION_KEY": "m" * 32}, "^MFA_ENCRYPTION_KEY is one repeated character"),
        ({"MFA_ENCRYPTION_KEY": "short-key"}, "^MFA_ENCRYPTION_KEY is shorter than 32 bytes"),
        ({"METRICS_TOKEN": "scrape-me"}, "^METRICS_TOKEN is shorter than 32 bytes"),
        ({"METRICS_TOKEN": "x" * 64}, "^METRICS_TOKEN is one repeated character"),
        ({"SUPERADMIN_PASSWORD": "hunter2-hunter2"}, "^SUPERADMIN_PASSWORD is shorter than 32 bytes"),
        ({"SUPERADMIN_PASSWORD": "a" * 40}, "^SUPERADMIN_PASSWORD is one repeated character"),
        ({"ALLOWED_ORIGINS": "https://app.example.com,*"}, "^ALLOWED_ORIGINS must list origins, not '\\*'"),
        ({"PUBLIC_BASE_URL": "http://app.example.com"}, "^PUBLIC_BASE_URL must be an https:// URL in production"),
        ({"PUBLIC_BASE_URL": ""}, "^PUBLIC_BASE_URL"),
        ({"SMTP_URL": ""}, "^SMTP_URL must be set in production"),
        (
            {"SMTP_URL": "smtp://mailer:secret@mail.example.com:25"},
            "^SMTP_URL sends credentials over plain smtp:// to mail.example.com",
        ),
        ({"SMTP_URL": "smtp://mailer@relay.internal"}, "^SMTP_URL sends credentials over plain smtp://"),
        ({"BCRYPT_COST": "9"}, "^BCRYPT_COST must be at least 10 in production, not 9$"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8,0.0.0.0/0"}, "^TRUSTED_PROXIES must not contain 0.0.0.0/0 in production"),
        ({"TRUSTED_PROXIES": "::/0"}, "^TRUSTED_PROXIES must not contain ::/0 in production"),
        ({"METRICS_ALLOWED_CIDRS": "0.0.0.0/0"}, "^METRICS_ALLOWED_CIDRS must not contain 0.0.0.0/0 in production"),
        ({"METRICS_ALLOWED_CIDRS": "127.0.0.1/32,::/0"}, "^METRICS_ALLOWED_CIDRS must not contain ::/0"),
        ({"JWT_ACCESS_TTL": "3601"}, "^JWT_ACCESS_TTL must be at most 3600 s in production, not 3601$"),
        ({"JWT_REFRESH_TTL": str(90 * 86400 + 1)}, "^JWT_REFRESH_TTL must be at most 90 days"),
        ({"PASSWORD_RESET_TTL_S": "86401"}, "^PASSWORD_RESET_TTL_S must be at most 86400 s in production"),
        ({"REFRESH_REUSE_GRACE_S": "61"}, "^REFRESH_REUSE_GRACE_S must be at most 60 s in production"),
        ({"LOCKOUT_THRESHOLD": "21"}, "^LOCKOUT_THRESHOLD must be at most 20 in production, not 21$"),
        ({"RATE_LIMIT_AUTH": "101/900"}, r"^the auth rate limit \(RATE_LIMIT_AUTH or the policy table\) .* 101/900$"),
        ({"LOCKOUT_THRESHOLD": "5", "LOCKOUT_ACCOUNT_THRESHOLD": "4"}, "^LOCKOUT_ACCOUNT_THRESHOLD must be at least"),
        ({"LOCKOUT_ACCOUNT_THRESHOLD": "101"}, "^LOCKOUT_ACCOUNT_THRESHOLD must be at most 100 in production"),
        ({"REAUTH_MAX_AGE_S": "901"}, "^REAUTH_MAX_AGE_S must be at most 900 in production"),
        ({"SESSION_MAX_AGE_S": str(90 * 86400 + 1)}, "^SESSION_MAX_AGE_S must be at most 90 days in production"),
        ({"DATABASE_URL": "postgres://app@db.internal:5432/m360"}, "^DATABASE_URL reaches db.internal without TLS"),
        ({"DATABASE_URL": "postgres://app@10.1.2.3/m360?sslmode=prefer"}, "^DATABASE_URL reaches 10.1.2.3 without TLS"),
        ({"DATABASE_URL": "postgres://app@localhost.example/m360?sslmode=allow"}, "^DATABASE_URL .* without TLS"),
        (
            {"REDIS_URL": "redis://cache.internal:6379/0"},
            "^REDIS_URL reaches cache.internal without TLS: use rediss://",
        ),
        ({"REDIS_URL": "redis+cluster://127.0.0.1:7000,10.0.0.7:7001"}, "^REDIS_URL reaches 10.0.0.7 without TLS"),
        ({"REDIS_URL": "redis://cache.internal:6379/0", "ALLOW_INSECURE_TRANSPORT": "false"}, "^REDIS_URL reaches"),
        (
            {"WEBAUTHN_ORIGINS": "http://app.example.com"},
            "^WEBAUTHN_ORIGINS entry 'http://app.example.com' must be https",
        ),
        (
            {"WEBAUTHN_ORIGINS": "https://app.example.com,http://localhost:8000"},
            "^WEBAUTHN_ORIGINS entry 'http://localhost:8000' must be https",
        ),
        ({"WEBAUTHN_RP_ID": "other.example"}, "^WEBAUTHN_RP_ID 'other.example' is neither the host of"),
        ({"WEBAUTHN_RP_ID": "com"}, "^WEBAUTHN_RP_ID 'com' is neither the host of .* nor a registrable suffix"),
        ({"WEBAUTHN_RP_ID": "pp.example.com"}, "^WEBAUTHN_RP_ID 'pp.example.com' is neither"),
        (
            {"WEBAUTHN_ORIGINS": "https://app.example.com,https://evil.example.net"},
            "^WEBAUTHN_RP_ID 'app.example.com' is neither the host of WEBAUTHN_ORIGINS entry 'https://evil",
        ),
    ],
)
def test_production_refuses_each_unsafe_setting_in_one_line_naming_it(environ, fragment):
    with pytest.raises(SettingsError, match=fragment) as refused:
        load_settings({**PRODUCTION, **environ})
    message = str(refused.value)
    assert "\n" not in message
    for name in ("JWT_SECRET", "MFA_ENCRYPTION_KEY", "METRICS_TOKEN", "SUPERADMIN_PASSWORD"):
        value = {**PRODUCTION, **environ}.get(name)
        assert not value or value not in message, "a refusal never quotes a secret"
    assert "secret@" not in message and "mailer:" not in message


@pytest.mark.parametrize(
    ("environ", "party"),
    [
        ({}, ("app.example.com", "MANAS360", ("https://app.example.com",))),
        (
            {"WEBAUTHN_RP_ID": "example.com", "WEBAUTHN_ORIGINS": "https://app.example.com,https://example.com"},
            ("example.com", "MANAS360", ("https://app.example.com", "https://example.com")),
        ),
        (
            {
                "WEBAUTHN_RP_ID": "App.Example.com",
                "WEBAUTHN_RP_NAME": "Manas 360",
                "WEBAUTHN_ORIGINS": " https://app.example.com:8443 ",
            },
            ("app.example.com", "Manas 360", ("https://app.example.com:8443",)),
        ),
    ],
)
def test_production_accepts_a_passkey_party_on_the_origins_host_or_a_registrable_suffix(environ, party):
    assert load_settings({**PRODUCTION, **environ}).webauthn == party


def test_production_refuses_at_the_command_line_in_one_line_exit_2():
    result = _cli("warm-cache", env={**PRODUCTION, "BCRYPT_COST": "4", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip() == "manas360: configuration error: BCRYPT_COST must be at least 10 in production, not 4"
    )


@pytest.mark.parametrize(
    ("environ", "required"),
    [
        ({}, False),
        ({"ENV": "test"}, False),
        (PRODUCTION, True),
        ({"ADMIN_REQUIRE_MFA": "1"}, True),
        ({"ADMIN_REQUIRE_MFA": ""}, False),
        ({**PRODUCTION, "ADMIN_REQUIRE_MFA": "0"}, False),
    ],
)
def test_admin_mfa_is_required_in_production_unless_switched_off(environ, required):
    assert load_settings(environ).admin_mfa_required is required


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "manas360.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_production_start_with_weak_secret_is_one_line_and_exit_2():
    result = _cli("serve", env={"ENV": "production", "JWT_SECRET": "weak", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "JWT_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_development_start_with_a_short_secret_is_one_line_and_exit_2():
    # It used to pass settings, then every worker died in the key set with a traceback (exit 137).
    result = _cli("serve", env={"ENV": "development", "JWT_SECRET": "short", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "JWT_SECRET" in result.stderr
    assert "Traceback" not in result.stderr and "short" not in result.stderr.replace("shorter", "")


def test_the_table_prints_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "scripts.settings_table"], capture_output=True, text=True, timeout=60, cwd=README.parent
    )
    assert result.returncode == 0 and result.stdout == markdown_table()


def test_serve_with_an_unusable_redis_url_is_one_line_and_exit_2_without_the_password():
    result = _cli(
        "serve",
        env={"REDIS_URL": "redis://:s3cr3t@127.0.0.1:6379/0?ssl_ca_certs=/etc/hostname", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr and "s3cr3t" not in result.stderr


def test_production_start_with_unreachable_store_is_one_line_and_exit_1(environ):
    env = {
        **PRODUCTION,
        "DATABASE_URL": environ["DATABASE_URL"],
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "PATH": "/usr/bin:/bin",
    }
    result = _cli("serve", "--port", "1", env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Redis" in result.stderr.strip().splitlines()[-1]
