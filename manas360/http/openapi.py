"""The OpenAPI 3.1 document, built from the app's route table and the models each handler
declares (`manas360.http.operations.operation`).

Built here rather than by sanic-ext's generator: that one writes OpenAPI 3.0, knows nothing
of the per-status envelope responses, and would need its output rewritten to carry
pydantic's JSON Schema 2020-12 (which OpenAPI 3.1 takes as it is). Here the schemas are
pydantic's own, the statuses come from the declarations, and the output is deterministic,
so the committed docs/openapi.json can be compared byte for byte with what the code builds.

Regenerate the committed copy with `python -m manas360.openapi > docs/openapi.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from sanic import Sanic

from manas360 import __version__
from manas360.http.operations import TEXT_PLAIN, Operation, declared
from manas360.http.schemas import ErrorEnvelope

OPENAPI_VERSION = "3.1.0"
SCHEMA_REF = "#/components/schemas/{model}"
REGENERATE = "python -m manas360.openapi > docs/openapi.json"
TITLE = "MANAS360 API"
DESCRIPTION = """Authentication, authorization and subscription core of MANAS360.

Every error, from every layer, is the JSON envelope `ErrorEnvelope`: `{"error", "message", "request_id"}`
with `fields`, `upgrade`, `retry_after` or `mfa_token` where they help; each response lists the
`error` codes of its status. Every response carries `X-Request-ID`. Access tokens are sent as
`Authorization: Bearer <token>`. Times are ISO-8601 with an explicit UTC offset."""
TAGS = [
    {"name": "auth", "description": "Accounts, sign-in, tokens and sessions (`/api/v1/auth`)"},
    {"name": "passkeys", "description": "Passkeys (WebAuthn): adding, removing, signing in (`/api/v1/auth/passkeys`)"},
    {"name": "me", "description": "The caller's own profile (`/api/v1/me`)"},
    {"name": "plans", "description": "The public price list (`/api/v1/plans`)"},
    {"name": "product", "description": "The gated product surfaces"},
    {"name": "admin", "description": "Users, roles, plans and audit administration (`/api/v1/admin`, privilege 90+)"},
    {
        "name": "integration",
        "description": "For other services: the public signing keys (JWKS) and token "
        "introspection (docs/integration.md)",
    },
    {"name": "operations", "description": "Health, readiness and metrics (no `/api/v1` prefix, no rate limit)"},
]
_PARAMETER = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)(?::[^>]*)?>")
_REQUEST_ID_HEADER: dict[str, Any] = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}


def routes(app: Sanic[Any, Any]) -> list[tuple[str, str, Operation]]:
    """(OpenAPI path, method, operation) of every declared route, sorted."""
    found = []
    for route in app.router.routes:
        operation = declared(route.handler)
        if operation is None:
            continue
        path = "/" + _PARAMETER.sub(r"{\1}", route.path).strip("/")
        for method in route.methods:
            if method not in ("HEAD", "OPTIONS"):
                found.append((path, method.lower(), operation))
    return sorted(found, key=lambda item: (item[0], item[1]))


def build_document(app: Sanic[Any, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app`."""
    operations = routes(app)
    ids = [operation.id for _, _, operation in operations]
    duplicates = {name for name in ids if ids.count(name) > 1}
    if duplicates:
        raise ValueError(f"operationIds used twice: {sorted(duplicates)}")
    paths: dict[str, dict[str, Any]] = {}
    for path, method, operation in operations:
        paths.setdefault(path, {})[method] = _operation(path, operation)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": TITLE, "version": __version__, "description": DESCRIPTION},
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": _schemas(operation for _, _, operation in operations),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "The `access_token` of a token pair",
                },
                "serviceKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A service's key from INTROSPECTION_KEYS",
                },
            },
            "headers": {
                "X-Request-ID": {
                    "description": "The request's id: the client's own when sane (1-64 of `A-Za-z0-9._:-`), else "
                    "a generated one; also the envelope's `request_id`",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        },
    }


def render(document: dict[str, Any]) -> bytes:
    """The document as committed: stable key order, two-space indent, final newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": SCHEMA_REF.format(model=model.__name__)}


def _operation(path: str, operation: Operation) -> dict[str, Any]:
    item: dict[str, Any] = {"operationId": operation.id, "tags": [operation.tag], "summary": operation.summary}
    if operation.description:
        item["description"] = operation.description
    parameters = _parameters(path, operation)
    if parameters:
        item["parameters"] = parameters
    if operation.body is not None:
        item["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(operation.body)}}}
    responses: dict[str, Any] = {}
    for status, answer in sorted(operation.responses.items()):
        responses[str(status)] = _success(status, answer)
    for status, codes in operation.error_codes().items():
        model = operation.error_model if status == 503 else ErrorEnvelope
        headers = dict(_REQUEST_ID_HEADER)
        if status in (429, 503):
            headers["Retry-After"] = {
                "description": "Seconds to wait (the envelope's `retry_after`)",
                "schema": {"type": "integer"},
            }
        responses[str(status)] = {
            "description": "`error`: " + ", ".join(f"`{code}`" for code in codes),
            "headers": headers,
            "content": {"application/json": {"schema": _ref(model)}},
        }
    item["responses"] = responses
    if operation.secured:
        item["security"] = [{"bearer": []}]
    elif operation.service_key:
        item["security"] = [{"serviceKey": []}]
    return item


def _success(status: int, answer: type[BaseModel] | str | None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _STATUS_TEXT.get(status, "OK"), "headers": dict(_REQUEST_ID_HEADER)}
    if answer == TEXT_PLAIN:
        response["content"] = {TEXT_PLAIN: {"schema": {"type": "string"}}}
    elif isinstance(answer, type):
        response["content"] = {"application/json": {"schema": _ref(answer)}}
    return response


_STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content"}


def _parameters(path: str, operation: Operation) -> list[dict[str, Any]]:
    parameters = []
    names = re.findall(r"{([^}]+)}", path)
    path_fields = operation.path.model_fields if operation.path is not None else {}
    for name in names:
        schema: dict[str, Any] = {"type": "string"}
        description = None
        if name in path_fields:
            schema = _inline_schema(operation.path, name)  # type: ignore[arg-type]  # present when path_fields is
            description = path_fields[name].description
        parameter: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": schema}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    if operation.query is not None:
        schema = operation.query.model_json_schema(mode="validation")
        required = set(schema.get("required", ()))
        for name, field in operation.query.model_fields.items():
            parameter = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": _plain(schema["properties"][name]),
            }
            if field.description:
                parameter["description"] = field.description
            parameters.append(parameter)
    return parameters


def _inline_schema(model: type[BaseModel], name: str) -> dict[str, Any]:
    return _plain(model.model_json_schema(mode="validation")["properties"][name])


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema: an optional one as its non-null branch (a query parameter is
    absent, never null), without the title pydantic adds."""
    schema = {key: value for key, value in schema.items() if key not in ("title", "description")}
    branches = schema.pop("anyOf", None)
    if branches:
        kept = [branch for branch in branches if branch.get("type") != "null"]
        if len(kept) == 1:
            schema = {**kept[0], **schema}
        else:
            schema["anyOf"] = kept
        if schema.get("default", 0) is None:
            del schema["default"]
    return schema


def _schemas(operations: Iterable[Operation]) -> dict[str, Any]:
    """Component schemas of every body (validation side) and answer (serialisation side)."""
    inputs: set[type[BaseModel]] = set()
    outputs: set[type[BaseModel]] = {ErrorEnvelope}
    for operation in operations:
        if operation.body is not None:
            inputs.add(operation.body)
        outputs.add(operation.error_model)
        outputs.update(answer for answer in operation.responses.values() if isinstance(answer, type))
    overlap = inputs & outputs
    if overlap:
        raise ValueError(f"a model is both a request body and a response: {sorted(m.__name__ for m in overlap)}")
    pairs = [(model, "validation") for model in sorted(inputs, key=lambda m: m.__name__)]
    pairs += [(model, "serialization") for model in sorted(outputs, key=lambda m: m.__name__)]
    _, top = models_json_schema(pairs, ref_template=SCHEMA_REF)  # type: ignore[arg-type]  # literal modes
    schemas: dict[str, Any] = top.get("$defs", {})
    for name in [name for name in schemas if name.endswith(("-Input", "-Output"))]:
        raise ValueError(f"{name}: a model is used in both directions; give each side its own model")
    return dict(sorted(schemas.items()))
