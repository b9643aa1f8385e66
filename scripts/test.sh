#!/usr/bin/env bash
# make test, after make setup: every check and every test (arguments go to the lab's pytest).
#
# The checks that need no lab (lint, the collection's own checks, unit and functional tests, the
# agents on each platform's Python: `make check`'s list) run beside the lab's first steps, which
# measure nothing: the crash test of `anycast-lab up`, the lab coming up and the session's two
# site.yml runs. The lab tests that time things wait for the checks to end first (ANYCAST_CHECKS_RC,
# read by the `fleet` fixture in tests/lab/conftest.py), so no timing is taken on a loaded machine;
# when a check failed, the lab tests stop there. The checks' output is printed whole once they end.
set -uo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
set -m  # the checks in a process group of their own, so that an interrupted run stops all of them
(
  make --no-print-directory -j3 --output-sync=target AGENTS_TEST_ARGS=--skip-missing \
    lint collection-check unit agents-test >"$work/checks.log" 2>&1
  echo $? >"$work/checks.rc.tmp" && mv "$work/checks.rc.tmp" "$work/checks.rc"
) &
checks=$!
set +m
trap 'kill -- -"$checks" 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

echo "test: the checks that need no lab run beside the lab's set-up (their output follows the lab tests)"
ANYCAST_CHECKS_RC="$work/checks.rc" .venv/bin/pytest -q -m lab -p no:cacheprovider "$@"
lab=$?
wait "$checks" 2>/dev/null
echo
echo "================================ the checks that need no lab ================================"
cat "$work/checks.log"
rc=$(cat "$work/checks.rc" 2>/dev/null || echo 1)
echo "test: checks exit $rc, lab tests exit $lab"
[ "$rc" = 0 ] && [ "$lab" = 0 ]
