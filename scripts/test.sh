#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs and starts the local stack, then runs
# lint, unit, flow and integration tests. Extra arguments go to pytest (e.g. tests/unit -k proxy).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/stack.sh" up
eval "$("$ROOT/scripts/stack.sh" env)"
cd "$ROOT"
.venv/bin/python -m deployments.register local
echo "[test] ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "[test] pytest"
exec .venv/bin/python -m pytest -p no:cacheprovider "${@:-tests}"
