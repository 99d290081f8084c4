"""Secrets from files (X_FILE) and the optional .env file, with the documented precedence."""

from __future__ import annotations

import secrets

import pytest

from manas360.config_sources import resolve
from manas360.settings import SECRET_FIELDS, SettingsError, load_settings
from tests.fixtures.environment import test_environ as isolated_environ

SECRET = "s" * 40


def test_every_secret_reads_from_a_file(tmp_path):
    path = tmp_path / "jwt"
    path.write_text(SECRET + "\n")  # the newline an editor or `echo` leaves is not part of it
    settings = load_settings(isolated_environ(JWT_SECRET="", JWT_SECRET_FILE=str(path)))
    assert settings.jwt_secret.get_secret_value() == SECRET
    db = tmp_path / "db"
    db.write_text("postgres://app:p%40ss@db.internal:5432/manas360")
    assert load_settings(isolated_environ(DATABASE_URL_FILE=str(db), DATABASE_URL="")).database_url.endswith(
        "@db.internal:5432/manas360"
    )
    for secret in SECRET_FIELDS:  # each secret has its _FILE
        environ = resolve({f"{secret.upper()}_FILE": str(path)}, secrets=SECRET_FIELDS, dotenv=False)
        assert environ[secret.upper()] == SECRET


def test_both_or_an_unreadable_file_is_one_line(tmp_path):
    path = tmp_path / "jwt"
    path.write_text(SECRET)
    with pytest.raises(SettingsError, match="JWT_SECRET and JWT_SECRET_FILE are both set"):
        load_settings(isolated_environ(JWT_SECRET=SECRET, JWT_SECRET_FILE=str(path)))
    with pytest.raises(SettingsError, match=r"JWT_SECRET_FILE: cannot read .*missing"):
        load_settings(isolated_environ(JWT_SECRET="", JWT_SECRET_FILE=str(tmp_path / "missing")))


def test_the_environment_wins_over_the_env_file_variable_by_variable(tmp_path, monkeypatch):
    secret_file = tmp_path / "jwt"
    secret_file.write_text(SECRET)
    (tmp_path / ".env").write_text(
        "# comment\nexport PORT=8123\nWORKERS='3'\nJWT_SECRET=from-dotenv-but-hidden-by-the-file-in-env\n"
        'LOG_LEVEL="ERROR"  \nHOST=0.0.0.0 # inline comment\n'
    )
    monkeypatch.chdir(tmp_path)
    for name, value in isolated_environ(JWT_SECRET="", JWT_SECRET_FILE=str(secret_file), WORKERS="4").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("JWT_SECRET")
    monkeypatch.delenv("ENV_FILE", raising=False)
    monkeypatch.delenv("LOG_LEVEL")
    settings = load_settings()
    assert (settings.port, settings.workers, settings.log_level, settings.host) == (8123, 4, "ERROR", "0.0.0.0")
    assert settings.jwt_secret.get_secret_value() == SECRET  # env's JWT_SECRET_FILE hides .env's JWT_SECRET
    monkeypatch.setenv("ENV_FILE", "")  # off
    assert load_settings().port == 8000
    monkeypatch.setenv("ENV_FILE", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match="ENV_FILE: .*absent does not exist"):
        load_settings()


def test_env_example_names_only_settings_and_loads_once_its_secrets_are_set(tmp_path):
    from manas360.config_sources import read_env_file
    from manas360.settings import Settings
    from tests.fixtures.server import ROOT

    example = read_env_file({"ENV_FILE": str(ROOT / ".env.example")})
    compose_only = {"POSTGRES_PASSWORD"}
    assert set(example) - compose_only <= {name.upper() for name in Settings.model_fields}
    environ = {name: value for name, value in example.items() if name not in compose_only}
    settings = load_settings(
        {
            **environ,
            "JWT_SECRET": secrets.token_urlsafe(48),
            "MFA_ENCRYPTION_KEY": secrets.token_urlsafe(48),
            "SUPERADMIN_PASSWORD": secrets.token_urlsafe(24),
        }
    )
    assert settings.is_production and settings.mail_from == "MANAS360 <no-reply@example.com>"
