"""ACCESS_LOG: one JSON line per request with method, route template, status, duration,
request id and client address, and nothing the client could hide a secret in; off, none."""

from __future__ import annotations

import json
import uuid

from manas360.access_log import ACCESS_LOGGER
from manas360.settings import load_settings
from tests.fixtures.app import client_for, running_app

SECRET = "tok-SeCrEt-4f9a0c"
USER_ID = str(uuid.uuid4())
CLIENT_IP = "203.0.113.7"


def _service_lines(stderr: str) -> list[dict]:
    """The service's log lines (the test's own httpx client logs the URLs it requests)."""
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if not line["logger"].startswith(("httpx", "httpcore"))]


def _access_lines(stderr: str) -> list[dict]:
    return [line for line in _service_lines(stderr) if line["logger"] == ACCESS_LOGGER]


async def _serve(environ, capfd, *, access_log: str, requests) -> str:
    """stderr written while `requests` ran against an app with ACCESS_LOG=`access_log`."""
    settings = load_settings({**environ, "ACCESS_LOG": access_log, "LOG_LEVEL": "INFO", "LOG_JSON": "1"})
    async with running_app(settings) as app, client_for(app, client_ip=CLIENT_IP) as client:
        capfd.readouterr()  # whatever the start logged
        await requests(client)
        return capfd.readouterr().err


async def _admin_user_with_token(client) -> None:
    response = await client.get(
        f"/api/v1/admin/users/{USER_ID}?access_token={SECRET}&email=a%40b.example",
        headers={"Authorization": f"Bearer {SECRET}", "X-Request-ID": "req-access-1", "Cookie": f"session={SECRET}"},
    )
    assert response.status_code == 401


async def test_one_access_line_per_request_with_its_fields_and_no_secrets(ops_environ, capfd):
    stderr = await _serve(ops_environ, capfd, access_log="1", requests=_admin_user_with_token)
    [line] = _access_lines(stderr)
    assert line["request_id"] == "req-access-1" and line["level"] == "INFO"
    fields = line["extra"]
    assert fields["method"] == "GET" and fields["status"] == 401
    assert fields["route"] == "/api/v1/admin/users/<user_id:str>"
    assert fields["client_ip"] == CLIENT_IP
    assert 0 <= fields["duration_ms"] < 10_000
    assert set(fields) == {"method", "route", "status", "duration_ms", "client_ip"}
    assert not {"access_token", "?", "Bearer", "Cookie"} & set(json.dumps(line).split('"'))
    logged = json.dumps(_service_lines(stderr))
    for hidden in (SECRET, USER_ID, "access_token", "a%40b", "a@b", "Bearer"):
        assert hidden not in logged


async def test_unmatched_path_and_unknown_method_are_logged_by_label(ops_environ, capfd):
    async def requests(client):
        await client.get(f"/no/such/{SECRET}?q={SECRET}")
        await client.request("BREW", "/health/live")

    stderr = await _serve(ops_environ, capfd, access_log="1", requests=requests)
    lines = _access_lines(stderr)
    assert [(line["extra"]["method"], line["extra"]["route"]) for line in lines] == [
        ("GET", "unmatched"),
        ("other", "unmatched"),
    ]
    assert [line["extra"]["status"] for line in lines] == [404, 405]
    logged = json.dumps(_service_lines(stderr))
    assert SECRET not in logged and "BREW" not in logged


async def test_access_log_off_logs_nothing_and_registers_nothing(ops_environ, capfd):
    stderr = await _serve(ops_environ, capfd, access_log="0", requests=_admin_user_with_token)
    assert _access_lines(stderr) == []
    app = create_app_for_inspection(ops_environ, access_log="0")
    assert "log_access" not in {m.func.__name__ for m in app.response_middleware}


def create_app_for_inspection(environ, *, access_log: str):
    from manas360.app import create_app

    settings = load_settings({**environ, "ACCESS_LOG": access_log, "LOG_LEVEL": "INFO"})
    return create_app(settings, name=f"access_{uuid.uuid4().hex}")
