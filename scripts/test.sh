#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs and starts the local stack, then runs
# lint, unit, flow and integration tests. Extra arguments go to pytest (e.g. tests/unit -k proxy).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/stack.sh" up
if ! command -v chromium >/dev/null; then  # the browser test drives Debian's Chromium
  echo "[test] installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
eval "$("$ROOT/scripts/stack.sh" env)"
cd "$ROOT"
echo "[test] registering every environment, deploying prefect.yaml"
.venv/bin/python -m deployments.setup --force
echo "[test] ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "[test] pytest"
exec .venv/bin/python -m pytest -p no:cacheprovider "${@:-tests}"
