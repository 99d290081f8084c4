"""Where settings come from besides the environment: an optional `.env` file, and secrets
in files (`JWT_SECRET_FILE=/run/secrets/jwt` for `JWT_SECRET`), as container platforms,
Kubernetes and systemd credentials hand them over.

Precedence, highest first (README, "Configuration"):
1. the process environment, variable by variable: a variable it sets (X or X_FILE) hides
   both X and X_FILE of the `.env` file;
2. the `.env` file: `ENV_FILE` (default `.env` in the working directory; missing is fine,
   `ENV_FILE=` turns it off), `NAME=value` lines, `#` comments, optional quotes and `export`;
3. each setting's default.
For every secret X, X_FILE names a file whose content (one trailing newline removed) is the
value; setting both X and X_FILE is a configuration error, as is a file that can't be read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

ENV_FILE_VARIABLE = "ENV_FILE"
DEFAULT_ENV_FILE = ".env"
FILE_SUFFIX = "_FILE"


class ConfigSourceError(ValueError):
    """A `.env` or secret file that cannot be used (one line, for the exit-2 message)."""


def resolve(environ: Mapping[str, str], *, secrets: Iterable[str], dotenv: bool) -> dict[str, str]:
    """`environ` merged over the `.env` file (when `dotenv`), with every secret X read from
    X_FILE when that is set."""
    merged = dict(environ)
    if dotenv:
        for name, value in read_env_file(environ).items():
            if _base(name) not in merged and f"{_base(name)}{FILE_SUFFIX}" not in merged:
                merged[name] = value
    for secret in secrets:
        name = secret.upper()
        path = merged.get(f"{name}{FILE_SUFFIX}", "").strip()
        if not path:
            continue
        if merged.get(name, "").strip():
            raise ConfigSourceError(f"{name} and {name}{FILE_SUFFIX} are both set: set one of them")
        merged[name] = _read_secret(f"{name}{FILE_SUFFIX}", Path(path))
    return merged


def _base(name: str) -> str:
    return name[: -len(FILE_SUFFIX)] if name.endswith(FILE_SUFFIX) else name


def _read_secret(variable: str, path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigSourceError(f"{variable}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return text[:-1] if text.endswith("\n") else text


def read_env_file(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of the `.env` file `environ` points at (none when it is absent)."""
    configured = environ.get(ENV_FILE_VARIABLE)
    if configured is not None and not configured.strip():
        return {}
    path = Path(configured.strip() if configured else DEFAULT_ENV_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if configured:
            raise ConfigSourceError(f"{ENV_FILE_VARIABLE}: {path} does not exist") from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigSourceError(f"{ENV_FILE_VARIABLE}: cannot read {path}: {exc}") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name.replace("_", "").isalnum():
            raise ConfigSourceError(f"{path}:{number}: expected NAME=value")
        values[name.upper()] = _unquote(value.strip())
    return values


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    if " #" in value:  # an unquoted value ends at a comment
        value = value.split(" #", 1)[0].rstrip()
    return value
