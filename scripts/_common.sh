# Shared by scripts/run.sh and scripts/test.sh: a virtualenv with the project installed,
# and PostgreSQL + Redis that answer (the configured ones, the machine's local ones, or
# project-local instances started from the installed server binaries under .local/).
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
LOCAL="$ROOT/.local"
PY=${PYTHON:-python3}

say() { printf '\033[1m[manas360]\033[0m %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

ensure_venv() {  # ensure_venv [extras]: the locked dependencies, then the project itself
  # Two statements: in one `local a=x b=$a`, $a is expanded before it is assigned.
  local extras=${1:-}
  local stamp="$VENV/.installed${extras:+-$extras}" lock="$ROOT/requirements/${extras:-main}.txt"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv in .venv"
    "$PY" -m venv "$VENV" || die "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"
  fi
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
    say "installing manas360${extras:+ [$extras]} into .venv from ${lock#"$ROOT"/}"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    # Exactly the locked versions, each checked against its hash (scripts/lock refreshes them).
    "$VENV/bin/python" -m pip install -q --require-hashes -r "$lock" || die "pip install of $lock failed"
    # setuptools tells every editable install that a folder named like the package may shadow
    # it (an InformationOnly warning, ten lines on stderr): nothing to act on, so not shown.
    PYTHONWARNINGS="ignore:Editable installation" \
      "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" || die "pip install of the project failed"
    touch "$stamp"
  fi
}

port_open() {  # port_open host port
  "$VENV/bin/python" - "$1" "$2" <<'PYEOF' 2>/dev/null
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PYEOF
}

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin /usr/local/bin /usr/bin; do
    [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  return 1
}

# Start a project-local PostgreSQL on port $1 (data in .local/postgres), trust auth, user root.
start_local_postgres() {
  local port=$1 bin data="$LOCAL/postgres" run_as=()
  bin=$(pg_bin) || die "PostgreSQL is not reachable and no server binaries are installed: apt-get install postgresql"
  mkdir -p "$LOCAL"
  if [ "$(id -u)" = 0 ]; then  # initdb refuses to run as root
    if ! id postgres >/dev/null 2>&1; then
      say "creating the system user 'postgres' (no home, no login) to run the project-local PostgreSQL: initdb refuses to run as root"
      useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    run_as=(runuser -u postgres --)
    mkdir -p "$data" "$LOCAL/pgsock" && chown postgres "$data" "$LOCAL/pgsock"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    say "initialising a project-local PostgreSQL in .local/postgres"
    "${run_as[@]}" "$bin/initdb" -D "$data" -U root --auth=trust >/dev/null || die "initdb failed"
  fi
  say "starting project-local PostgreSQL on 127.0.0.1:$port"
  "${run_as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-p $port -k $LOCAL/pgsock -c listen_addresses=127.0.0.1" start >/dev/null || die "pg_ctl start failed: see $data/server.log"
}

start_local_redis() {
  local port=$1
  command -v redis-server >/dev/null || die "Redis is not reachable and redis-server is not installed: apt-get install redis-server"
  mkdir -p "$LOCAL/redis"
  say "starting project-local Redis on 127.0.0.1:$port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$LOCAL/redis" --logfile "$LOCAL/redis/redis.log" >/dev/null || die "redis-server failed to start"
  for _ in $(seq 50); do port_open 127.0.0.1 "$port" && return 0; sleep 0.1; done
  die "Redis on port $port did not come up: see .local/redis/redis.log"
}

# Exports DATABASE_URL / REDIS_URL (and TEST_* for the tests) pointing at servers that answer.
ensure_services() {
  if [ -z "${DATABASE_URL:-}" ]; then
    if port_open 127.0.0.1 5432; then
      export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://root@127.0.0.1:5432}
    else
      port_open 127.0.0.1 55432 || start_local_postgres 55432
      export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://root@127.0.0.1:55432}
    fi
    export DATABASE_URL="$TEST_DATABASE_URL/manas360"
  fi
  if [ -z "${REDIS_URL:-}" ]; then
    if port_open 127.0.0.1 6379; then
      export REDIS_URL=redis://127.0.0.1:6379/0
    else
      port_open 127.0.0.1 56379 || start_local_redis 56379
      export REDIS_URL=redis://127.0.0.1:56379/0
    fi
    export TEST_REDIS_URL=${TEST_REDIS_URL:-$REDIS_URL}
  fi
}
