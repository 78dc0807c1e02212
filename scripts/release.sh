#!/usr/bin/env bash
# The main job: release the real sample app (examples/flowmasters-payload: Payload CMS 3 and
# Next.js) to the local Docker-host environment.
#
#   scripts/release.sh                 # version = last commit of the app's folder (or dev-<digest>)
#   scripts/release.sh v2              # an explicit version
#   scripts/release.sh --dry-run       # publish the plan, change nothing
#
# Installs and starts what is missing (scripts/stack.sh up), registers the `local` environment's
# blocks and deploys prefect.yaml (each only when it changed), runs the release flow against the
# Prefect server and prints where to watch it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/stack.sh" up
eval "$("$ROOT/scripts/stack.sh" env)"
cd "$ROOT"
# The `local` environment's blocks and prefect.yaml's deployments (so the automatic rollback
# when a release fails exists from the first run); each only if it changed since the last run.
.venv/bin/python -m deployments.setup local
args=()
if [[ $# -gt 0 && $1 != --* ]]; then args+=(--version "$1"); shift; fi
exec .venv/bin/python -m flows.cli --environment local "${args[@]}" "$@"
