#!/usr/bin/env bash
# The same release as the flow's, by hand: the careful shell script a team would write, the yardstick
# of benchmarks/overhead.py. Only the docker CLI, pg_dump, HAProxy's socket (socat) and curl; no
# caching, no records, no retries. It releases the stand-ins (examples/flowmasters) to a Docker-host
# environment the flow set up before (its HAProxy backends exist, one slot is live).
#
#   NAME VERSION SOURCE BASE_IMAGE REGISTRY PORT_BASE BACKEND_URL FRONTEND_URL SOCKET BACKUP
#   PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD [WINDOW=5]  bash benchmarks/plain_release.sh
#
# Steps, as the flow does them: build and push both images; pg_dump; migrate in a one-off
# container; per service (backend, then frontend): start on the idle slot, wait for health, put
# it in rotation, drain and park the old; the smoke checks for WINDOW seconds; stop the old.
set -euo pipefail

WINDOW=${WINDOW:-5}
say() { echo "[plain] $*"; }
haproxy() { echo "$1" | socat -t 5 - "UNIX-CONNECT:$SOCKET"; }
# The status (column 18) of a server of this environment's backend for a service.
status_of() { haproxy "show stat" | awk -F, -v be="be_${NAME}_$1" -v sv="slot$2" '$1 == be && $2 == sv {print $18}'; }
sessions_of() { haproxy "show stat" | awk -F, -v be="be_${NAME}_$1" -v sv="slot$2" '$1 == be && $2 == sv {print $5}'; }
wait_until() {  # what, seconds, command...
  local what=$1 seconds=$2 deadline
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { say "$what did not happen within ${seconds}s"; exit 1; }
    sleep 0.2
  done
}
is_up() { [[ $(status_of "$1" "$2") == UP* ]]; }
no_sessions() { [[ $(sessions_of "$1" "$2") == 0 ]]; }

image() { echo "$REGISTRY/$NAME/$1:$VERSION"; }

for service in backend frontend; do
  docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "APP_VERSION=$VERSION" \
    -t "$(image "$service")" "$SOURCE/$service" >/dev/null
  docker push -q "$(image "$service")" >/dev/null
done
say "built and pushed"

pg_dump -Fc -f "$BACKUP"
say "backed up to $BACKUP"

db=(-e PGHOST -e PGPORT -e PGUSER -e PGDATABASE -e PGPASSWORD)
docker run --rm --network host "${db[@]}" "$(image backend)" python3 /app/migrate.py up >/dev/null
say "migrated"

old_containers=()
slot_index=0
for service in backend frontend; do
  live=0
  [[ $(status_of "$service" 0) == MAINT* ]] && live=1
  new=$((1 - live))
  port=$((PORT_BASE + 2 * slot_index + new))
  name="fm-$NAME-$service-$VERSION-s$new"
  extra=()
  [[ $service == backend ]] && extra=("${db[@]}")
  [[ $service == frontend ]] && extra=(-e "BACKEND_URL=$BACKEND_URL")
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" --network host -e "PORT=$port" "${extra[@]}" \
    --label flowmasters.managed=true --label "flowmasters.environment=$NAME" \
    --label "flowmasters.service=$service" --label "flowmasters.version=$VERSION" \
    --label "flowmasters.slot=$new" "$(image "$service")" >/dev/null
  wait_until "$service healthy" 60 curl -fsS "http://127.0.0.1:$port/api/health"
  haproxy "set server be_${NAME}_$service/slot$new state ready" >/dev/null
  wait_until "$service slot$new UP" 30 is_up "$service" "$new"
  haproxy "set server be_${NAME}_$service/slot$live state drain" >/dev/null
  wait_until "$service slot$live drained" 30 no_sessions "$service" "$live"
  haproxy "set server be_${NAME}_$service/slot$live state maint" >/dev/null
  old_containers+=($(docker ps -q --filter "label=flowmasters.environment=$NAME" \
    --filter "label=flowmasters.service=$service" --filter "label=flowmasters.slot=$live"))
  say "$service: slot$new live"
  slot_index=$((slot_index + 1))
done

check() {
  curl -fsS "$BACKEND_URL/api/health" | grep -q "\"version\": *\"$VERSION\"" &&
    curl -fsS "$FRONTEND_URL/api/health" | grep -q "\"version\": *\"$VERSION\"" &&
    curl -fsS "$FRONTEND_URL/api/backend" | grep -q "\"version\": *\"$VERSION\"" &&
    curl -fsS -o /dev/null "$FRONTEND_URL/"
}
deadline=$((SECONDS + WINDOW))
while ((SECONDS < deadline)); do
  check || { say "smoke checks failed"; exit 1; }
  sleep 0.5
done
say "smoke checks passed for ${WINDOW}s"

if ((${#old_containers[@]})); then docker stop -t 10 "${old_containers[@]}" >/dev/null; fi
say "released $VERSION"
