"""The policy table: defaults per docs/api.md, RATE_LIMIT_<NAME> overrides, another table by
RATE_LIMITS_FILE, and refusals of tables that would leave a route silently unprotected."""

from __future__ import annotations

import pytest

from manas360.settings import SettingsError, load_settings
from tests.edge.conftest import POLICY_TABLE


def test_the_shipped_table_matches_the_contract():
    policies = load_settings({}).rate_policies
    assert {name: (p.limit, p.window_s, p.key, p.applies) for name, p in policies.items()} == {
        "global": (100, 900, "ip", "every-request"),
        "auth": (5, 900, "ip+route", "routes"),
        "passkey_options": (60, 900, "ip", "routes"),
        "api": (1000, 3600, "user", "authenticated"),
    }
    assert policies["passkey_options"].routes == (("POST", "/api/v1/auth/passkeys/login/options"),)
    assert policies["auth"].routes == (
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/password"),
        ("POST", "/api/v1/auth/password-reset"),
        ("POST", "/api/v1/auth/password-reset/confirm"),
        ("POST", "/api/v1/auth/verify-email/resend"),
        ("POST", "/api/v1/auth/reauthenticate"),
        ("POST", "/api/v1/auth/passkeys/login"),
        ("POST", "/api/v1/me/email"),
        ("POST", "/api/v1/auth/email-change/confirm"),
        ("POST", "/api/v1/auth/email-change/cancel"),
        ("POST", "/api/v1/auth/account-deletion/cancel"),
    )
    # Every auth route costs a bcrypt: without Redis to count them they answer 503.
    assert policies["global"].fail_open and not policies["auth"].fail_open and not policies["api"].fail_open
    assert load_settings({}).rate_exempt_paths == (
        "/health",
        "/metrics",
        "/.well-known/jwks.json",
        "/api/v1/auth/introspect",
    )


def test_environment_overrides_limit_and_window_only():
    policies = load_settings({"RATE_LIMIT_GLOBAL": "7/60", "RATE_LIMIT_API": "9/30"}).rate_policies
    assert (policies["global"].limit, policies["global"].window_s, policies["global"].key) == (7, 60, "ip")
    assert (policies["api"].limit, policies["api"].window_s) == (9, 30)
    assert (policies["auth"].limit, policies["auth"].window_s) == (5, 900)


def _table(tmp_path, text: str) -> dict[str, str]:
    path = tmp_path / "ratelimits.toml"
    path.write_text(text)
    return {"RATE_LIMITS_FILE": str(path)}


def test_another_table_can_add_a_policy_overridable_by_its_own_variable(tmp_path):
    text = (
        POLICY_TABLE + '\n[policies.password]\nkey = "ip"\nroutes = ["POST /api/v1/auth/password/"]\n'
        "limit = 3\nwindow_s = 60\n"
    )
    settings = load_settings({**_table(tmp_path, text), "RATE_LIMIT_PASSWORD": "4/120"})
    policy = settings.rate_policies["password"]
    assert (policy.limit, policy.window_s, policy.routes) == (4, 120, (("POST", "/api/v1/auth/password"),))


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda t: t.replace("[policies.api]", "[policies.apx]"), "missing policies api"),
        (lambda t: t.replace('key = "ip+route"', 'key = "cookie"'), "key must be"),
        (lambda t: t.replace('applies = "routes"', 'applies = "sometimes"'), "applies must be"),
        (lambda t: t.replace('routes = ["POST /probe/register"]', 'routes = ["/probe/register"]'), "METHOD /path"),
        (lambda t: t.replace('routes = ["POST /probe/register"]', 'routes = ["FETCH /x"]'), "METHOD /path"),
        (lambda t: t.replace("limit = 5\n", "limit = 0\n"), "positive"),
        (lambda t: t.replace("limit = 5\n", 'limit = "5"\n'), "positive"),
        (lambda t: t.replace("window_s = 900\n", "window_s = 900\nburst = 3\n", 1), "unknown keys burst"),
        (lambda t: t.replace('key = "user"', 'key = "ip"'), "key 'user'"),
        (lambda t: t.replace('[policies.global]\nkey = "ip"', '[policies.global]\nkey = "ip+route"'), "keyed by ip"),
        (lambda t: t.replace('exempt = ["/health", "/metrics"]', 'exempt = ["health"]'), "exempt"),
        (lambda t: t.replace("limit = 100\n", "limit = 100000000000\n"), "too large"),
        (lambda t: t + "\n[policies.Bad-Name]\nlimit = 1\nwindow_s = 1\n", "names are"),
        (lambda t: t + "\n[policies.ipv6_prefix]\nlimit = 1\nwindow_s = 1\n", "'ipv6_prefix' is taken"),
        (lambda t: t + "\nextra = 1\n", "unknown keys extra"),
        (lambda t: t + "\n[policies", "ratelimits.toml"),
    ],
)
def test_a_malformed_table_is_refused_at_start(tmp_path, change, fragment):
    with pytest.raises(SettingsError, match=fragment):
        load_settings(_table(tmp_path, change(POLICY_TABLE)))


def test_a_missing_table_file_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="nowhere.toml"):
        load_settings({"RATE_LIMITS_FILE": str(tmp_path / "nowhere.toml")})


@pytest.mark.parametrize("value", ["100", "0/60", "10/0", "x/60", "10/6o"])
def test_a_malformed_override_names_its_variable(value):
    with pytest.raises(SettingsError, match="RATE_LIMIT_AUTH"):
        load_settings({"RATE_LIMIT_AUTH": value})
