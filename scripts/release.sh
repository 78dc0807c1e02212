#!/usr/bin/env bash
# The main job: release the real sample app (examples/flowmasters-payload: Payload CMS 3 and
# Next.js) to the local Docker-host environment.
#
#   scripts/release.sh                 # version = last commit of the app's folder (or dev-<digest>)
#   scripts/release.sh v2              # an explicit version
#   scripts/release.sh --dry-run       # publish the plan, change nothing
#
# Installs and starts what is missing (scripts/stack.sh up), registers the `local` environment's
# blocks, runs the release flow against the Prefect server and prints where to watch it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/stack.sh" up
eval "$("$ROOT/scripts/stack.sh" env)"
cd "$ROOT"
.venv/bin/python -m deployments.register local  # the one environment this command releases
# The deployments (and so the automatic rollback when a release fails) exist from the first run.
.venv/bin/prefect --no-prompt deploy --all >/dev/null
args=()
if [[ $# -gt 0 && $1 != --* ]]; then args+=(--version "$1"); shift; fi
exec .venv/bin/python -m flows.cli --environment local "${args[@]}" "$@"
