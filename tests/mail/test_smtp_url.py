"""SMTP_URL and the other mail settings: the three forms, their defaults, what is refused,
and a password that never shows."""

from __future__ import annotations

import pytest

from manas360.settings import SettingsError, load_settings
from manas360.smtp import parse_smtp_url
from tests.fixtures.environment import production_environ


@pytest.mark.parametrize(
    ("url", "security", "port"),
    [
        ("smtp://mail.example.com", "plain", 25),
        ("smtp+starttls://mail.example.com", "starttls", 587),
        ("smtps://mail.example.com", "tls", 465),
        ("SMTPS://mail.example.com:2465", "tls", 2465),
    ],
)
def test_the_three_forms_and_their_default_ports(url, security, port):
    config = parse_smtp_url(url)
    assert (config.host, config.port, config.security, config.username, config.password) == (
        "mail.example.com",
        port,
        security,
        None,
        None,
    )


def test_credentials_are_percent_decoded_and_never_shown(environ):
    config = parse_smtp_url("smtp+starttls://us%40er:p%40ss%2Fw%3Ard@mail.example.com:587?timeout=5")
    assert (config.username, config.password, config.timeout_s) == ("us@er", "p@ss/w:rd", 5.0)
    assert "p%40ss" not in repr(config) and "p@ss" not in repr(config)
    settings = load_settings({**environ, "SMTP_URL": "smtps://user:hunter2hunter2@mail.example.com"})
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert settings.smtp is not None and settings.smtp.password == "hunter2hunter2"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://mail.example.com", "must start with smtp://"),
        ("smtp://", "has no host"),
        ("smtp://mail.example.com:99999", "invalid port"),
        ("smtp://mail.example.com/path", "path"),
        ("smtp://mail.example.com?tls=1", "unknown parameters: tls"),
        ("smtps://mail.example.com?ssl_ca_certs=/no/such/file", "names no readable file"),
        ("smtp://mail.example.com?timeout=0", "timeout"),
        ("smtp://mail.example.com?timeout=x", "timeout"),
    ],
)
def test_malformed_urls_are_refused_without_quoting_them(environ, url, problem):
    with pytest.raises(SettingsError) as refused:
        load_settings(
            {
                **environ,
                "SMTP_URL": url.replace("mail.example", "user:sekrit@mail.example", 1)
                if "://" in url and url.split("://")[1]
                else url,
            }
        )
    assert problem in str(refused.value) and str(refused.value).startswith("SMTP_URL ")
    assert "sekrit" not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PUBLIC_BASE_URL", "javascript:alert(1)"),
        ("PUBLIC_BASE_URL", "/relative"),
        ("PUBLIC_BASE_URL", "ftp://files.example.com"),
        ("MAIL_FROM", "nobody"),
        ("PASSWORD_RESET_TTL_S", "0"),
        ("EMAIL_VERIFY_TTL_S", "-5"),
        ("MAIL_RETRY_MAX_S", "0"),
        ("MAIL_POLL_S", "0"),
    ],
)
def test_unsafe_mail_settings_are_refused(environ, name, value):
    with pytest.raises(SettingsError) as refused:
        load_settings({**environ, name: value})
    assert name in str(refused.value)


def test_the_mail_defaults_match_the_contract():
    settings = load_settings({})
    assert (settings.smtp_url, settings.smtp, settings.mail_from, settings.public_base_url) == (
        "",
        None,
        "no-reply@localhost",
        "http://127.0.0.1:8000",
    )
    assert (settings.password_reset_ttl_s, settings.email_verify_ttl_s, settings.require_verified_email) == (
        1800,
        86400,
        False,
    )
    assert load_settings({"ENV": "test"}).smtp is None  # no SMTP_URL outside production: mail waits, /health says so
    with pytest.raises(SettingsError, match="^SMTP_URL must be set in production"):
        load_settings(production_environ(SMTP_URL=""))
