"""The committed contract (docs/openapi.json): what the code builds, byte for byte; valid
OpenAPI 3.1; served as it is at /docs/openapi.json; and complete (every route of the app
is in it, every authenticated operation carries the bearer scheme)."""

from __future__ import annotations

import json

from openapi_spec_validator import validate
from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator

from manas360.http.hooks import ACCOUNT_PAGES
from manas360.http.openapi import REGENERATE, build_document, render, routes
from manas360.http.operations import declared
from tests.fixtures.contract import DOCUMENT


def test_the_committed_document_is_what_the_code_builds(app):
    built = render(build_document(app))
    assert DOCUMENT.read_bytes() == built, f"docs/openapi.json is out of date: regenerate it with `{REGENERATE}`"


def test_the_document_is_valid_openapi_3_1():
    document = json.loads(DOCUMENT.read_text())
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


async def test_the_service_serves_the_committed_document(client):
    response = await client.get("/docs/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == DOCUMENT.read_bytes()


def test_every_route_but_the_docs_and_the_account_page_is_an_operation(app):
    # (sanic-ext answers CORS preflights and HEAD through routes of its own.) The HTML pages,
    # /docs and /account with the mailed links' landing paths, are not JSON operations.
    pages = {path.strip("/") for path in ACCOUNT_PAGES} | {"account/<name:str>"}
    undeclared = [
        route.path
        for route in app.router.routes
        if declared(route.handler) is None
        and not route.path.strip("/").startswith("docs")
        and route.path.strip("/") not in pages
        and not set(route.methods) <= {"OPTIONS", "HEAD"}
    ]
    assert undeclared == []
    assert len(routes(app)) >= 29


# Public operations that still answer 401 (a wrong password, code or token in the body).
# Public routes whose credential is in the body (a password, a refresh, mfa or mailed token, a passkey
# assertion) answer 401 too.
PUBLIC_401 = (
    "/api/v1/auth/login",
    "/api/v1/auth/account-deletion/cancel",
    "/api/v1/auth/email-change/cancel",
    "/api/v1/auth/refresh",
    "/api/v1/auth/mfa/verify",
    "/api/v1/auth/password-reset/confirm",
    "/api/v1/auth/verify-email",
    "/api/v1/auth/passkeys/login",
)


def test_operations_are_named_tagged_and_secured():
    document = json.loads(DOCUMENT.read_text())
    ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            assert operation["operationId"].replace("_", "").isalnum() and operation["operationId"].islower()
            assert operation["tags"] and operation["summary"], (method, path)
            responses = operation["responses"]
            assert "default" not in responses, (method, path)
            assert {"400", "500", "503"} <= set(responses), (method, path)
            secured = operation.get("security") == [{"bearer": []}]
            service = operation.get("security") == [{"serviceKey": []}]
            assert service == (path == "/api/v1/auth/introspect"), (method, path)
            assert secured == ("401" in responses and path not in PUBLIC_401 and not service), (method, path)
    assert len(ids) == len(set(ids))
    for expected in (
        "auth_login",
        "auth_register",
        "auth_refresh",
        "auth_logout",
        "me_get",
        "admin_list_users",
        "admin_list_audit_logs",
        "product_premium_dashboard",
        "ops_health",
    ):
        assert expected in ids
    schemas = document["components"]["schemas"]
    for name in ("TokenPair", "User", "ErrorEnvelope"):
        assert schemas[name]["examples"], name
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The `access_token` of a token pair",
    }
