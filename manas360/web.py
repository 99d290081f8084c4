"""The HTTP edge shared by every blueprint: request ids, the error envelope, response
headers and JSON body parsing. Services never see any of this."""

from __future__ import annotations

import re
import secrets
from typing import Any, TypeVar

import orjson
import pydantic
from loguru import logger
from sanic import Request
from sanic.exceptions import PayloadTooLarge, RequestCancelled, SanicException
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse

from manas360 import errors
from manas360.cursors import decode_cursor, encode_cursor  # noqa: F401  (the list helpers' codec)
from manas360.logs import request_id_var

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_SANIC_STATUS_TO_ERROR: dict[int, type[errors.AppError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    408: errors.RequestTimeout,
    413: errors.PayloadTooLarge,
    503: errors.ServiceUnavailable,
}
Model = TypeVar("Model", bound=pydantic.BaseModel)

MAX_JSON_DEPTH = 32
"""Objects and arrays nested deeper than this are refused (400) before any model sees them."""
DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT = 20, 100
MAX_CURSOR_CHARS = 512
_NUL_ESCAPE = b"\\u0000"  # JSON can carry NUL only as this escape (raw control bytes are invalid)
NUL_ALLOWED_KEYS = frozenset({"password", "current_password", "new_password"})
"""Keys whose string values may hold NUL: secrets that are only ever hashed, never stored
or passed on as text (a password may contain any character)."""
_PAGE_LIMIT_TEXT = re.compile(r"^[0-9]{1,6}$")


def request_id(request: Request | None) -> str:
    """The request's id: the client's X-Request-ID when sane, else a new one (once)."""
    if request is None:
        return request_id_var.get() if request_id_var.get() != "-" else secrets.token_hex(16)
    rid = getattr(request.ctx, "request_id", None)
    if rid is None:
        sent = request.headers.get("x-request-id", "")
        rid = sent if _SANE_REQUEST_ID.match(sent) else secrets.token_hex(16)
        request.ctx.request_id = rid
    return rid


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    return HTTPResponse(orjson.dumps(body), status=status, headers=headers, content_type="application/json")


def error_response(request: Request | None, error: errors.AppError) -> HTTPResponse:
    headers = {}
    retry_after = error.extra.get("retry_after")
    if retry_after is not None and error.status in (429, 503):
        headers["Retry-After"] = str(retry_after)
    response = json_response(error.body(request_id(request)), status=error.status, headers=headers)
    response.headers["X-Request-ID"] = request_id(request)
    return response


def to_app_error(exception: BaseException) -> errors.AppError:
    """Map any exception to the API error it must leave as (unknown ones are 500s)."""
    if isinstance(exception, errors.AppError):
        return exception
    if isinstance(exception, PayloadTooLarge) and str(exception).startswith("Request header"):
        # Sanic reports a request head over REQUEST_MAX_HEADER_SIZE as a 413 "payload".
        return errors.RequestHeaderFieldsTooLarge()
    if isinstance(exception, SanicException):
        error_type = _SANIC_STATUS_TO_ERROR.get(exception.status_code)
        if error_type is errors.MethodNotAllowed:
            return errors.MethodNotAllowed()
        if error_type is errors.ServiceUnavailable:  # Sanic's response timeout: a store stalled
            return errors.ServiceUnavailable("The service could not answer in time")
        if error_type is not None:
            return error_type()
        if 400 <= exception.status_code < 500:
            return errors.BadRequest()
    outage = _outage_component(exception)
    if outage:
        return errors.ServiceUnavailable(f"{outage} is unavailable", component=outage)
    return errors.InternalError()


def _outage_component(exception: BaseException) -> str | None:
    from redis.exceptions import RedisError
    from tortoise.exceptions import DBConnectionError

    if isinstance(exception, RedisError):
        return "redis"
    if isinstance(exception, (DBConnectionError, ConnectionError, OSError)):
        return "database"
    module = type(exception).__module__
    if module.startswith("asyncpg") and type(exception).__name__ in (
            "ConnectionDoesNotExistError", "CannotConnectNowError", "InterfaceError",
            "TooManyConnectionsError", "ConnectionFailureError", "AdminShutdownError"):
        return "database"
    return None


class EnvelopeErrorHandler(ErrorHandler):
    """Renders every error, from routing to crashes, as the docs/api.md envelope."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        error = to_app_error(exception)
        if isinstance(exception, RequestCancelled):  # the client went away: nothing to answer
            logger.debug("request cancelled by the client on {}", request.path if request is not None else "-")
        elif error.status >= 500:
            path = request.path if request is not None else "-"
            if isinstance(error, errors.ServiceUnavailable):
                if request is not None:
                    request.ctx.unavailable = error.extra.get("component")
                logger.warning("{} unavailable on {}: {!r}", error.extra.get("component"), path, exception)
            else:
                logger.opt(exception=exception).error("unhandled error on {}", path)
        response = error_response(request, error)
        if isinstance(exception, SanicException) and exception.status_code == 405:
            allow = (getattr(exception, "headers", None) or {}).get("Allow")
            if allow:
                response.headers["Allow"] = allow
        return response

    @staticmethod
    def log(request: Request, exception: Exception) -> None:
        """Logging happens in default(), once, with the request id."""


def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; 400 for a wrong content type, bad JSON, a non-object or
    nesting deeper than MAX_JSON_DEPTH; 422 for a NUL character in any key or string
    (except the values of NUL_ALLOWED_KEYS)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise errors.BadRequest("Content-Type must be application/json")
    raw = request.body or b""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.BadRequest("Body is not valid JSON") from None
    if not isinstance(body, dict):
        raise errors.BadRequest("Body must be a JSON object")
    # Both checks walk the document only when the raw bytes say they might fail.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH or _NUL_ESCAPE in raw:
        _check_json_document(body)
    return body


def _check_json_document(body: dict[str, Any]) -> None:
    # PostgreSQL text cannot hold NUL (asyncpg would fail the query: a 500), and deep
    # nesting only costs recursion somewhere downstream; refuse both at the edge.
    pending: list[tuple[Any, int, str]] = [(body, 1, "")]
    while pending:
        value, depth, where = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise errors.BadRequest(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            path = f"{where}.{key}" if where else str(key)
            nul_key = isinstance(key, str) and "\x00" in key
            if nul_key or (isinstance(item, str) and "\x00" in item and key not in NUL_ALLOWED_KEYS):
                raise errors.ValidationError({path: "Must not contain NUL characters"})
            if isinstance(item, (dict, list)):
                pending.append((item, depth + 1, path))


def parse_body(request: Request, model: type[Model]) -> Model:
    """Validate the JSON object body against `model`; 422 with `fields` when it does not fit."""
    return validate(model, read_json_object(request))


def validate(model: type[Model], data: dict[str, Any]) -> Model:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        fields = {}
        for problem in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in problem["loc"]) or "body"
            fields.setdefault(where, problem["msg"])
        raise errors.ValidationError(fields) from None


class Page(pydantic.BaseModel):
    """Query parameters of a paginated list: `limit` 1..100 (default 20), an opaque `cursor`."""

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)

    limit: int = pydantic.Field(DEFAULT_PAGE_LIMIT, ge=1, le=MAX_PAGE_LIMIT)
    cursor: str | None = pydantic.Field(None, min_length=1, max_length=MAX_CURSOR_CHARS,
                                        pattern=r"^[A-Za-z0-9_-]+$")

    @pydantic.field_validator("limit", mode="before")
    @classmethod
    def _plain_digits(cls, value: Any) -> Any:
        # pydantic alone would take "5_0", " 5 " or "5.0"; a query parameter is digits.
        if isinstance(value, str) and not _PAGE_LIMIT_TEXT.match(value):
            raise ValueError(f"Must be an integer from 1 to {MAX_PAGE_LIMIT}")
        return value


def parse_page(request: Request, model: type[Model] = Page) -> Model:
    """A list's query parameters (`limit`, `cursor` and the model's filters); 422 with
    `fields` when out of range. Unknown parameters are ignored."""
    args = request.args
    return validate(model, {name: args.get(name) for name in model.model_fields if name in args})
