"""The rate-limit policy table (config/ratelimits.toml, or RATE_LIMITS_FILE): what a
policy is, and reading and checking the table. Settings reads it once at start
(`Settings.rate_policies`); the edge applies it (manas360.edge)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any


class RateTableError(ValueError):
    """The policy table or an override is unusable; the message is one line."""


RATE_KEYS = ("ip", "user", "ip+route")
RATE_SCOPES = ("every-request", "routes", "authenticated")
REQUIRED_POLICIES = ("global", "auth", "api")
_POLICY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_ROUTE_SPEC = re.compile(r"^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (/[^\s]*)$")


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """A sliding-window limit: `limit` requests per `window_s` seconds.

    The rest comes from the policy table (config/ratelimits.toml): what a request is
    counted under (`key`), which requests the policy applies to (`applies`, `routes`) and
    whether a Redis failure during the check lets the request through (`fail_open`).
    """

    name: str
    limit: int
    window_s: int
    key: str = "ip"
    applies: str = "routes"
    routes: tuple[tuple[str, str], ...] = ()
    fail_open: bool = True


def shipped_rate_table() -> dict[str, Any]:
    return tomllib.loads(resources.files("manas360.config").joinpath("ratelimits.toml").read_text(encoding="utf-8"))


def read_rate_table(
    *, path: str, override: Callable[[str], str], taken: Callable[[str], bool]
) -> tuple[dict[str, RatePolicy], tuple[str, ...]]:
    """The policy table at `path` (the shipped one when empty), each policy's limit/window
    replaced by `override(name)` when that is not empty ("<requests>/<window seconds>");
    `taken(name)` says a name is not available to a policy. RateTableError on anything wrong."""
    where = path or "config/ratelimits.toml"
    try:
        if path:
            with open(path, "rb") as table_file:
                table = tomllib.load(table_file)
        else:
            table = shipped_rate_table()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RateTableError(f"rate-limit policy table {where}: {exc}") from None
    unknown = set(table) - {"exempt", "policies"}
    _require(not unknown, f"{where}: unknown keys {', '.join(sorted(unknown))}")
    exempt = table.get("exempt", [])
    _require(
        isinstance(exempt, list) and all(isinstance(p, str) and p.startswith("/") for p in exempt),
        f"{where}: exempt must be a list of paths starting with '/'",
    )
    entries = table.get("policies", {})
    _require(
        isinstance(entries, dict) and all(isinstance(e, dict) for e in entries.values()),
        f"{where}: policies must be tables ([policies.<name>])",
    )
    missing = [name for name in REQUIRED_POLICIES if name not in entries]
    _require(not missing, f"{where}: missing policies {', '.join(missing)}")
    policies = {}
    for name, entry in entries.items():
        # RATE_LIMIT_IPV6_PREFIX is a setting, not the override of a policy "ipv6_prefix".
        _require(
            name in REQUIRED_POLICIES or not taken(name),
            f"{where}: policy name {name!r} is taken (RATE_LIMIT_{name.upper()} is a setting)",
        )
        policies[name] = _parse_policy(name, entry, override=override(name), where=where)
    return policies, tuple(p.rstrip("/") or "/" for p in exempt)


def _parse_policy(name: str, entry: dict[str, Any], *, override: str, where: str) -> RatePolicy:
    context = f"{where}: policy {name!r}"
    _require(bool(_POLICY_NAME.match(name)), f"{context}: names are lower-case letters, digits and '_', 32 at most")
    known = {"key", "applies", "routes", "limit", "window_s", "fail_open"}
    _require(set(entry) <= known, f"{context}: unknown keys {', '.join(sorted(set(entry) - known))}")
    limit: object
    window_s: object
    if override:
        limit, window_s = _parse_override(f"RATE_LIMIT_{name.upper()}", override)
    else:
        limit, window_s = entry.get("limit"), entry.get("window_s")
    if not (isinstance(limit, int) and isinstance(window_s, int) and limit >= 1 and window_s >= 1):
        raise RateTableError(f"{context}: limit and window_s must be positive integers")
    # The limiter's Lua arithmetic is exact only while limit * window in ms fits a double.
    _require(limit * window_s * 1000 < 2**53, f"{context}: limit * window_s is too large")
    key, applies = entry.get("key", "ip"), entry.get("applies", "routes")
    _require(key in RATE_KEYS, f"{context}: key must be one of {', '.join(RATE_KEYS)}")
    _require(applies in RATE_SCOPES, f"{context}: applies must be one of {', '.join(RATE_SCOPES)}")
    _require(
        (key == "user") == (applies == "authenticated"),
        f"{context}: key 'user' goes with applies 'authenticated', and only with it",
    )
    _require(
        not (applies == "every-request" and key == "ip+route"), f"{context}: an every-request policy is keyed by ip"
    )
    routes = _parse_routes(context, entry.get("routes", []))
    _require(not routes or applies == "routes", f"{context}: routes are listed only when applies = 'routes'")
    fail_open = entry.get("fail_open", key != "user")
    _require(isinstance(fail_open, bool), f"{context}: fail_open must be true or false")
    return RatePolicy(
        name=name, limit=limit, window_s=window_s, key=key, applies=applies, routes=routes, fail_open=fail_open
    )


def _parse_override(env_name: str, value: str) -> tuple[int, int]:
    count, sep, window = value.partition("/")
    try:
        limit, window_s = int(count), int(window)
    except ValueError:
        raise RateTableError(f"{env_name}={value!r} must be '<requests>/<window seconds>'") from None
    _require(
        bool(sep) and limit >= 1 and window_s >= 1,
        f"{env_name}={value!r} must be '<requests>/<window seconds>', both positive",
    )
    return limit, window_s


def _parse_routes(context: str, specs: Any) -> tuple[tuple[str, str], ...]:
    """("POST", "/api/v1/auth/login") pairs from "METHOD /path" strings (no trailing slash)."""
    _require(isinstance(specs, list), f"{context}: routes must be a list of 'METHOD /path'")
    routes: list[tuple[str, str]] = []
    for spec in specs:
        match = _ROUTE_SPEC.match(spec) if isinstance(spec, str) else None
        if match is None:
            raise RateTableError(f"{context}: route {spec!r} must be 'METHOD /path'")
        routes.append((match.group(1), match.group(2).rstrip("/") or "/"))
    return tuple(routes)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise RateTableError(message)
