#!/usr/bin/env bash
# The whole test suite, on a fresh machine too (.ci/run calls this): installs what is missing,
# makes the suite's own stack afresh (scripts/stack.sh --suite: every component of its own, on
# ports of its own, never the stack you release to), runs lint and every tier, several tests at
# once, then destroys the suite's stack and prints the run's time against its budget.
#
#   scripts/test.sh                  the whole suite, from a new suite stack (what CI runs)
#   scripts/test.sh tests/e2e -k ui  a subset (arguments go to pytest) against the suite's stack,
#                                    which stays up for the next subset (`scripts/stack.sh
#                                    --suite destroy` removes it)
#   FM_TEST_WORKERS=1 scripts/test.sh ...   one test at a time (default: 3 at once)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUDGET_MINUTES=40  # the whole run, stack included, with every tier (README, "Working on it")
started=$(date +%s)
export FM_STACK=suite
whole=false
[[ $# -gt 0 ]] || whole=true
say() { printf '[test] %s\n' "$*"; }
minutes() { printf '%d min %02d s' $(($1 / 60)) $(($1 % 60)); }

if $whole; then
  # A run starts from nothing the last one left: no records, images, databases or backups.
  "$ROOT/scripts/stack.sh" --suite destroy
fi
"$ROOT/scripts/stack.sh" --suite up
if ! command -v chromium >/dev/null; then  # the browser test drives Debian's Chromium
  say "installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
eval "$("$ROOT/scripts/stack.sh" --suite env)"
cd "$ROOT"
stack_ready=$(date +%s)
if $whole; then
  say "registering every environment, deploying prefect.yaml"
  .venv/bin/python -m deployments.setup --force
else
  .venv/bin/python -m deployments.setup  # only what changed since the last subset
  .venv/bin/python -m testbed.scratch remove-leftovers
fi
say "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
say "pytest"
pytest_started=$(date +%s)
status=0
.venv/bin/python -m pytest -p no:cacheprovider -n "${FM_TEST_WORKERS:-3}" \
  "${@:-tests}" || status=$?
pytest_ended=$(date +%s)

if $whole; then
  # The stack's logs of the last run stay readable (one copy, replaced by the next run).
  rm -rf "$FM_CACHE_DIR/last-suite-logs" && mkdir -p "$FM_CACHE_DIR"
  cp -r "$FM_STACK_DIR/logs" "$FM_CACHE_DIR/last-suite-logs" 2>/dev/null || true
  "$ROOT/scripts/stack.sh" --suite destroy
fi
total=$(($(date +%s) - started))
say "the suite's stack up: $(minutes $((stack_ready - started))); set-up and lint: $(minutes $((pytest_started - stack_ready))); pytest: $(minutes $((pytest_ended - pytest_started))); after: $(minutes $(($(date +%s) - pytest_ended)))"
verdict="within it"
((total <= BUDGET_MINUTES * 60)) || verdict="OVER BUDGET"
say "whole run: $(minutes "$total") of the ${BUDGET_MINUTES} min budget ($verdict); pytest exit $status"
exit "$status"
