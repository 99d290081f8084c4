#!/usr/bin/env bash
# The one command that runs the service on a fresh machine:
#   virtualenv + install -> PostgreSQL/Redis that answer -> migrate -> seed -> serve.
# Configuration comes from the environment (README.md lists every variable).
set -euo pipefail
source "$(dirname "$0")/_common.sh"

ensure_venv
ensure_services
say "database: ${DATABASE_URL##*@}  redis: ${REDIS_URL##*@}"
"$VENV/bin/manas360" migrate
"$VENV/bin/manas360" seed
say "serving on http://${HOST:-127.0.0.1}:${PORT:-8000} (docs at /docs); Ctrl-C or SIGTERM stops"
exec "$VENV/bin/manas360" serve "$@"
