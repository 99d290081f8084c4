#!/usr/bin/env bash
# The one command that runs the test suite: virtualenv with test extras, PostgreSQL and
# Redis that answer, then pytest (extra arguments are passed to pytest). Every run uses
# its own database and Redis key prefix and removes them at the end.
set -euo pipefail
source "$(dirname "$0")/_common.sh"

ensure_venv test
ensure_services
# The clock-skew drill runs a server under libfaketime (tests/drills/test_clock_skew.py).
if ! ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; then
  say "installing faketime (Debian package) for the clock-skew drill"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null; } \
    || die "the clock-skew drill needs libfaketime: apt-get install faketime"
fi
# The account page's browser test drives Debian's Chromium through chromedriver
# (tests/browser/test_account_life.py).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  say "installing chromium and chromium-driver (Debian packages) for the browser test"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
    || die "the browser test needs Chromium: apt-get install chromium chromium-driver"
fi
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
