"""Structured logging through loguru, with the request id on every line.

Sanic's, Tortoise's and every other standard-library logger are routed into loguru, so
there is one format and one sink. JSON lines when not on a terminal or in production.
Nothing here logs request bodies or headers: no secrets, tokens or passwords reach a log.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import orjson
from loguru import logger

from manas360.settings import Settings

if TYPE_CHECKING:  # loguru's types exist in its stub only
    from loguru import Message, Record

_STD_LEVELS = {
    "TRACE": 5,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "SUCCESS": 25,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

_STD_LOGGERS = (
    "sanic.root",
    "sanic.error",
    "sanic.server",
    "sanic.access",
    "sanic.websockets",
    "tortoise",
    "tortoise.db_client",
    "aerich",
    "asyncio",
)


class _InterceptHandler(logging.Handler):
    """Hands standard-library records to loguru, keeping their level and origin."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        message = record.getMessage()
        if not message and record.name == "sanic.access":
            message = "{} {} {}".format(
                getattr(record, "request", ""), getattr(record, "status", ""), getattr(record, "byte", "")
            )
        logger.opt(depth=6, exception=record.exc_info).bind(logger_name=record.name).log(level, message)


def _json_sink(message: Message) -> None:
    record = message.record
    line: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "message": record["message"],
        "request_id": record["extra"].get("request_id", "-"),
        "logger": record["extra"].get("logger_name", record["name"]),
    }
    extra = {k: v for k, v in record["extra"].items() if k not in ("request_id", "logger_name")}
    if extra:
        line["extra"] = extra
    if record["exception"] is not None:
        line["exception"] = "".join(message.splitlines(keepends=True)[1:]) or repr(record["exception"].value)
    sys.stderr.buffer.write(orjson.dumps(line, default=str) + b"\n")
    sys.stderr.flush()


def _add_request_id(record: Record) -> None:
    record["extra"].setdefault("request_id", request_id_var.get())


def wants_json(settings: Settings) -> bool:
    if settings.log_json in ("1", "true", "yes"):
        return True
    if settings.log_json in ("0", "false", "no"):
        return False
    return settings.is_production or not sys.stderr.isatty()


def configure_logging(settings: Settings) -> None:
    """Install the one loguru sink and route standard logging into it (idempotent)."""
    level = settings.log_level.upper()
    logger.remove()
    logger.configure(patcher=_add_request_id)
    if wants_json(settings):
        logger.add(_json_sink, level=level, format="{message}\n{exception}", backtrace=False, diagnose=False)
    else:
        logger.add(
            sys.stderr,
            level=level,
            format="<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
            "<cyan>{extra[request_id]}</cyan> {message}",
            backtrace=False,
            diagnose=False,
        )
    handler = _InterceptHandler()
    # The standard loggers filter at the same level, so a disabled debug line (Sanic logs
    # one per signal dispatch) is dropped before a record is even built.
    logging.basicConfig(handlers=[handler], level=_STD_LEVELS.get(level, logging.INFO), force=True)
    for name in _STD_LOGGERS:
        std = logging.getLogger(name)
        std.handlers = []
        std.propagate = True
    logging.getLogger("sanic.access").setLevel(logging.WARNING)
    logging.getLogger("tortoise").setLevel(logging.WARNING)
