#!/usr/bin/env bash
# The one command that runs the test suite: virtualenv with test extras, PostgreSQL and
# Redis that answer, then pytest (extra arguments are passed to pytest). Every run uses
# its own database and Redis key prefix and removes them at the end.
set -euo pipefail
source "$(dirname "$0")/_common.sh"

ensure_venv test
ensure_services
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
