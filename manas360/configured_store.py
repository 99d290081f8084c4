"""The Redis store as the settings configure it, for the app and every one-shot command.

store/ knows nothing of manas360's settings; this is the one place that maps them onto
`open_store`."""

from __future__ import annotations

from typing import Any

from manas360.settings import Settings
from manas360.store import Store, open_store


def open_configured_store(settings: Settings, **overrides: Any) -> Store:
    """`open_store` with the REDIS_* settings; `overrides` replace single arguments
    (e.g. a longer `socket_timeout_s` for a batch command)."""
    options: dict[str, Any] = dict(
        url=settings.redis_url,
        prefix=settings.redis_prefix,
        cluster=settings.redis_cluster,
        socket_timeout_s=settings.redis_socket_timeout_s,
        connect_timeout_s=settings.redis_connect_timeout_s,
        max_connections=settings.redis_max_connections,
    )
    options.update(overrides)
    return open_store(**options)
