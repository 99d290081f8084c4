# Shared by the CI checks of the README's commands and of the wheel: a free port, a
# throwaway database and Redis prefix, a server started until /health/ready answers.
# shellcheck shell=bash

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# serve_until_ready LOG COMMAND...: start COMMAND in its own process group, wait for
# /health/ready on $PORT, stop it with SIGTERM; fails (with the log's tail) otherwise.
serve_until_ready() {
  local log=$1; shift
  set -m; ("$@" >"$log" 2>&1 </dev/null) & local pid=$!; set +m
  local ok=0
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && { ok=1; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if [ $ok = 1 ] && [ -n "${AFTER_READY:-}" ]; then eval "$AFTER_READY" || ok=0; fi
  kill -TERM -- -"$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  if [ $ok != 1 ]; then echo "not ready (or the check after it failed): $*"; tail -20 "$log"; return 1; fi
}

drop_test_state() {  # drop_test_state DB PREFIX
  dropdb -h 127.0.0.1 --if-exists --force "$1" >/dev/null 2>&1 || true
  redis-cli -h 127.0.0.1 --scan --pattern "$2*" 2>/dev/null | xargs -r redis-cli -h 127.0.0.1 del >/dev/null 2>&1 || true
}
