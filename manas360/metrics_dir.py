"""prometheus-client's multiprocess directory: named here, in a module that imports nothing,
because it must be set before prometheus-client is first imported (it picks its storage
at import time)."""

from __future__ import annotations

import os

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_dir(path: str) -> None:
    """Create or empty prometheus-client's shared directory, before anything imports it."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    os.environ[MULTIPROC_ENV] = path
