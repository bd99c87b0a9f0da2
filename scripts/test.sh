#!/usr/bin/env bash
# The one test command (README, CI): makes sure PostgreSQL and Redis are reachable
# (using running ones, else starting throwaway ones from installed binaries, else
# installing them with apt-get when running as root), then runs the format check,
# clippy with -D warnings, and every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_HOST=127.0.0.1
PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
SCRATCH=$(mktemp -d /tmp/chat-server-test.XXXXXX)
STARTED_PG=""
STARTED_REDIS=""
PREFETCH=""
FUZZ_BUILD=""
FUZZ_RUN=""

log() { printf '\n==> [%s s] %s\n' "$SECONDS" "$*"; }

cleanup() {
  for job in $PREFETCH $FUZZ_BUILD $FUZZ_RUN; do kill "$job" 2>/dev/null || true; done
  if [[ -n $STARTED_PG ]]; then as_postgres "$PG_BIN/pg_ctl" -D "$SCRATCH/pg" -m fast stop >/dev/null 2>&1 || true; fi
  if [[ -n $STARTED_REDIS ]]; then redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; fi
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

apt_install() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "missing $* and cannot install it (need root and apt-get)" >&2
    exit 1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_ready() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; }

ensure_postgres() {
  command -v psql >/dev/null || apt_install postgresql-client
  if pg_ready; then log "using PostgreSQL on $PG_HOST:$PG_PORT"; return; fi
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [[ -z $PG_BIN ]]; then apt_install postgresql; PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1); fi
  PG_PORT=54329
  log "starting a throwaway PostgreSQL on port $PG_PORT"
  mkdir -p "$SCRATCH/pg"
  [[ $(id -u) -eq 0 ]] && chown -R postgres "$SCRATCH"
  as_postgres "$PG_BIN/initdb" -D "$SCRATCH/pg" -U postgres --auth=trust >/dev/null
  as_postgres "$PG_BIN/pg_ctl" -D "$SCRATCH/pg" -l "$SCRATCH/pg.log" -w \
    -o "-p $PG_PORT -k $SCRATCH -c listen_addresses=$PG_HOST -c fsync=off" start >/dev/null
  STARTED_PG=1
  pg_ready || { cat "$SCRATCH/pg.log"; exit 1; }
}

ensure_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then log "using Redis on 127.0.0.1:$REDIS_PORT"; return; fi
  REDIS_PORT=63799
  log "starting a throwaway Redis on port $REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$SCRATCH" --logfile "$SCRATCH/redis.log" >/dev/null
  STARTED_REDIS=1
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "Redis did not start" >&2; exit 1
}

# Some tests start their own PostgreSQL primary and standby (initdb,
# pg_basebackup), their own Redis Cluster (redis-server, redis-cli), and both
# over TLS with certificates made by openssl. The build links the system's
# OpenSSL (TLS to PostgreSQL and Redis).
ensure_server_binaries() {
  ls /usr/lib/postgresql/*/bin/pg_basebackup >/dev/null 2>&1 || apt_install postgresql
  command -v redis-cli >/dev/null || apt_install redis-tools
  command -v openssl >/dev/null || apt_install openssl
  pkg-config --exists openssl 2>/dev/null || apt_install libssl-dev pkg-config
}

# What later steps install, fetched in the background (at the lowest
# priority) while the workspace is formatted, linted and checked (network and
# disk more than CPU): Debian
# packages, the Django environment, schemathesis and the npm modules. Each
# step still checks for what it needs; none installs before wait_prefetch.
prefetch() {
  local packages=()
  command -v docker-compose >/dev/null || packages+=(docker-compose)
  command -v chromium >/dev/null || packages+=(chromium)
  command -v nginx >/dev/null || packages+=(nginx-light)
  command -v valgrind >/dev/null || packages+=(valgrind)
  command -v node >/dev/null || packages+=(nodejs npm)
  python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
  if (( ${#packages[@]} )); then apt_install "${packages[@]}"; fi
  scripts/django-env.sh >/dev/null
  scripts/schemathesis.sh --install-only
  (cd tests/browser && npm install --no-audit --no-fund --silent)
  (cd clients/js && npm ci --no-audit --no-fund --silent)
}

wait_prefetch() {
  wait "$PREFETCH" || { cat "$SCRATCH/prefetch.log"; echo "fetching what the tests need failed" >&2; exit 1; }
}

drop_test_databases() {
  psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc \
    "select datname from pg_database where datname like 'chat_test_%'" |
    while read -r db; do
      psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null
    done
}

# A few seconds of every load-test scenario against the real binary, so the tool
# cannot rot. Any error or integrity problem fails the run.
loadtest_smoke() {
  log "loadtest smoke run"
  cargo build -q -p chat-server -p loadtest
  local db="chat_test_loadtest_smoke" port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export DATABASE_URL="postgres://postgres@$PG_HOST:$PG_PORT/$db" SECRET_KEY="loadtest-smoke-secret-0123456789abcdef"
  export RATE_LIMIT_SENDS_PER_SEC=0 RATE_LIMIT_AUTH_PER_MIN=0 RATE_LIMIT_NEW_CHATS_PER_MIN=0 WS_MAX_SOCKETS_PER_USER=0 MAX_CONNECTIONS_PER_ADDRESS=0
  BIND="127.0.0.1:$port" RUST_LOG=warn target/debug/chat-server > "$SCRATCH/server.log" 2>&1 &
  local pid=$! url="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -s -o /dev/null "$url/api/chat/chats/" && break; sleep 0.1; done
  local lt=target/debug/loadtest status=0
  {
    $lt chat --url "$url" --pairs 4 --window 4 --duration 2 --server-pid "$pid" --json "$SCRATCH/chat.json" --plot "$SCRATCH/chat.svg" &&
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(not (r["server_cpu_per_message_us"] > 0 and 0 <= r["idle_share"] <= 1))' "$SCRATCH/chat.json" &&
    $lt rest --url "$url" --concurrency 4 --duration 1 --server-pid "$pid" --json "$SCRATCH/rest.json" &&
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(not (r["server_cpu_per_send_us"] > 0 and r["server_cpu_per_read_us"] > 0))' "$SCRATCH/rest.json" &&
    $lt connect --url "$url" --connections 50 --duration 1 --server-pid "$pid" &&
    $lt connect --url "$url" --connections 51 --processes 2 --duration 1 --server-pid "$pid" --json "$SCRATCH/connect.json" &&
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(r["connections_held"] != 51 or r["processes"] != 2 or not (r["server_cpu_per_connection_us"] > 0 and r["tool_cpu_per_connection_us"] > 0 and "database_cpu_per_connection_us" in r and 0 <= r["idle_share"] <= 1))' "$SCRATCH/connect.json" &&
    $lt connect --ceiling --connections 50 --duration 1 &&
    $lt connect --ceiling --connections 20 --processes 2 --duration 1 &&
    $lt verify --url "$url,$url" --pairs 2 --rate-per-pair 20 --churn-ms 300 --duration 2 &&
    $lt verify --url "$url,$url" --pairs 2 --rate-per-pair 20 --churn-ms 300 --duration 2 --user-sockets &&
    $lt echo --connections 4 --window 4 --duration 1 &&
    $lt store-ceiling --duration 1 --connections 2 --batch 64
  } > "$SCRATCH/loadtest.log" 2>&1 || status=$?
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  unset DATABASE_URL SECRET_KEY RATE_LIMIT_SENDS_PER_SEC RATE_LIMIT_AUTH_PER_MIN WS_MAX_SOCKETS_PER_USER MAX_CONNECTIONS_PER_ADDRESS
  grep -E '^(scenario|delivered|errors|lost|duplicated|out of order|PROBLEM)' "$SCRATCH/loadtest.log" || true
  if [[ $status -ne 0 ]]; then cat "$SCRATCH/loadtest.log" "$SCRATCH/server.log"; exit "$status"; fi
}

# scripts/callgrind.sh on the debug build, a handful of sockets: the script
# behind BENCHMARKS' instruction counts must keep working.
callgrind_smoke() {
  log "callgrind smoke run"
  command -v valgrind >/dev/null || apt_install valgrind
  local counted
  counted=$(PG="postgres://postgres@$PG_HOST:$PG_PORT" SERVER_BIN=target/debug/chat-server \
    LOADTEST_BIN=target/debug/loadtest CALLGRIND_OUT="$SCRATCH/callgrind" \
    scripts/callgrind.sh connect --connections 20 --duration 1 | grep '^instructions')
  echo "$counted"
  [[ $counted =~ \(20\ delivered,\ [1-9][0-9]*\ per\ item\) ]]
}

# scripts/targets.sh on the debug build at toy sizes: every target's row must
# come out (not met, at these sizes) and no scenario may fail.
targets_smoke() {
  log "targets smoke run"
  local table
  table=$(PG="postgres://postgres@$PG_HOST:$PG_PORT" SERVER_BIN=target/debug/chat-server \
    LOADTEST_BIN=target/debug/loadtest TARGETS_OUT="$SCRATCH/targets" DURATION=1 PAIRS=4 \
    WINDOW=4 RATE=200 CONCURRENCY=4 CONNECTIONS=60 HOLD=1 SYNC_HOLD=1 USERS=40 CHATS_PER_USER=4 \
    USER_SOCKET_CHATS=4 scripts/targets.sh)
  echo "$table" | grep '^|'
  [[ $(grep -c '^| ' <<<"$table") -eq 13 ]] && ! grep -qE 'not run|FAILED' <<<"$table" &&
    grep -qE '^\| connect .* floor: upgrade .* per socket' <<<"$table"
}

# The demo page in headless Chromium: two browser contexts chat through it
# (tests/browser/demo.mjs), against the binary started with zero configuration;
# the page runs on the client package, and one user goes offline and back.
browser_test() {
  log "browser test (headless Chromium, playwright-core)"
  command -v chromium >/dev/null || apt_install chromium
  command -v node >/dev/null || apt_install nodejs npm
  (cd tests/browser && npm install --no-audit --no-fund --silent)
  local port dir="$SCRATCH/demo"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$dir"
  env -i -C "$dir" BIND="127.0.0.1:$port" "$PWD/target/debug/chat-server" > "$SCRATCH/demo.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  local status=0
  node tests/browser/demo.mjs "http://127.0.0.1:$port" target/demo-screenshot.png || status=$?
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  if [[ $status -ne 0 ]]; then cat "$SCRATCH/demo.log"; exit "$status"; fi
}

# The cut-over from the Django backend has Django as its oracle: Django 5.2,
# DRF and SimpleJWT from PyPI in a throwaway virtual environment
# (scripts/django-env.sh), the project in tests/django, the tests in
# tests/api/django_cutover.rs. A plain `cargo test` ignores them (they need
# DJANGO_PYTHON); the test command runs them with everything else.
django_python() {
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv >&2
  scripts/django-env.sh
}

# The TypeScript client (clients/js): type-checked, then its Node tests against
# the debug binary, each on a fresh PostgreSQL database: every REST call, the
# server killed mid-stream, sends queued through a database outage, sends
# while offline and across a reload, a cursor past its chat's end, markers
# told again after a bus reconnect (a Redis of its own), token
# expiry, a refused refresh, a dead connection, the README's example, and the
# generated types and the served bundle against the server's own.
client_test() {
  log "TypeScript client (clients/js): Node tests against the real binary"
  command -v node >/dev/null || apt_install nodejs npm
  (cd clients/js && npm ci --no-audit --no-fund --silent &&
    TEST_PG_URL="postgres://postgres@$PG_HOST:$PG_PORT" CHAT_SERVER_BIN="$PWD/../../target/debug/chat-server" \
      npm test --silent)
}

# Property-based API tests against the OpenAPI document (scripts/schemathesis.sh:
# a fixed seed so CI is reproducible; SCHEMATHESIS_SEED=<other> explores new inputs).
schemathesis_run() {
  log "schemathesis against /api/schema/"
  scripts/schemathesis.sh
}

# deploy/nginx.conf in front of the binary, as docker-compose.yml runs it (its
# upstreams pointed at this server, its port and log moved to a scratch dir):
# the server believes the client address nginx forwards (TRUSTED_PROXIES), not
# one a client forges, and nginx's access log never holds a WebSocket token.
proxy_test() {
  log "nginx in front (deploy/nginx.conf): forwarded client addresses, no tokens in its log"
  command -v nginx >/dev/null || apt_install nginx-light
  local dir="$SCRATCH/proxy" port lb url token status=0
  mkdir -p "$dir/logs"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  lb=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  sed -e "s#server node[12]:8000#server 127.0.0.1:$port#" -e "s#listen 80;#listen 127.0.0.1:$lb;#" \
      -e "s#/var/log/nginx/access.log#$dir/logs/access.log#" deploy/nginx.conf > "$dir/nginx.conf"
  grep -q "127.0.0.1:$port" "$dir/nginx.conf" && grep -q "$dir/logs/access.log chat" "$dir/nginx.conf"
  env -i -C "$dir" BIND="127.0.0.1:$port" TRUSTED_PROXIES=127.0.0.1 RATE_LIMIT_AUTH_PER_MIN=6 \
    RATE_LIMIT_AUTH_BURST=3 "$PWD/target/debug/chat-server" > "$SCRATCH/proxy-server.log" 2>&1 &
  local pid=$!
  nginx -p "$dir" -c "$dir/nginx.conf" -g "daemon off; pid $dir/nginx.pid; error_log $dir/logs/error.log;" &
  local nginx_pid=$!
  url="http://127.0.0.1:$lb"
  # The server first, then nginx (-f: nginx answers 502 until its upstream is
  # up, and a refused first try would mark the upstream down for 10 s).
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  for _ in $(seq 100); do curl -sf -o /dev/null "$url/healthz" && break; sleep 0.1; done
  login() { # from-address, extra curl arguments...
    local from=$1; shift
    curl -s -o /dev/null -w '%{http_code}' --interface "$from" -XPOST "$url/auth/login/" \
      -H 'Content-Type: application/json' -d '{"email":"nobody@example.com","password":"wrong"}' "$@"
  }
  token="secret-token-$(date +%s%N)"
  {
    for _ in 1 2 3; do [[ $(login 127.0.0.2) == 401 ]]; done &&
    [[ $(login 127.0.0.2) == 429 ]] &&
    [[ $(login 127.0.0.2 -H 'X-Forwarded-For: 198.51.100.7') == 429 ]] &&
    [[ $(login 127.0.0.3) == 401 ]] &&
    curl -s -o /dev/null "$url/ws/chats/1/?token=$token" &&
    sleep 0.5 && grep -q 'GET /ws/chats/1/ HTTP' "$dir/logs/access.log" &&
    ! grep -q "$token" "$dir/logs/access.log"
  } || status=$?
  kill "$nginx_pid" "$pid" 2>/dev/null; wait "$nginx_pid" "$pid" 2>/dev/null || true
  if [[ $status -ne 0 ]]; then cat "$dir/logs/"* "$SCRATCH/proxy-server.log"; exit 1; fi
  echo "a client's own address decides its bucket through nginx; nginx logged no token"
}

# Coverage-guided fuzzing of the parsers that see untrusted bytes (scripts/fuzz.sh:
# cargo fuzz, installed from crates.io when missing), a bounded time per target.
# It runs beside schemathesis: each keeps about one core busy for about two
# minutes, and the machine has two.
fuzz_beside_schemathesis() {
  wait "$FUZZ_BUILD" || { tail -n 40 "$SCRATCH/fuzz-build.log"; echo "building the fuzz targets failed" >&2; exit 1; }
  FUZZ_BUILD=""
  log "fuzzing in the background: ${FUZZ_SECONDS:-20} s per target (scripts/fuzz.sh, $SCRATCH/fuzz.log)"
  FUZZ_SECONDS=${FUZZ_SECONDS:-20} scripts/fuzz.sh > "$SCRATCH/fuzz.log" 2>&1 &
  FUZZ_RUN=$!
  schemathesis_run
  log "waiting for the fuzzers"
  wait "$FUZZ_RUN" || { cat "$SCRATCH/fuzz.log"; exit 1; }
  FUZZ_RUN=""
  cat "$SCRATCH/fuzz.log"
}

ensure_postgres
ensure_redis
ensure_server_binaries
export TEST_PG="host=$PG_HOST port=$PG_PORT user=postgres"
export TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
drop_test_databases

log "fetching what later steps install, in the background ($SCRATCH/prefetch.log)"
prefetch > "$SCRATCH/prefetch.log" 2>&1 &
PREFETCH=$!
renice -n 19 -p "$PREFETCH" > /dev/null

log "cargo fmt --check"
cargo fmt --all -- --check
log "layers: each module uses only the layers below it, no circles (scripts/layers.py)"
python3 scripts/layers.py > /dev/null
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
wait_prefetch

# The fuzz targets build (a release build of their own) while the tests
# below run, at the lowest priority so that it takes only the CPU they leave
# (the tests wait on sockets and timers much of the time); fuzz_run then only
# runs them.
log "building the fuzz targets in the background ($SCRATCH/fuzz-build.log)"
nice -n 19 scripts/fuzz.sh --build-only > "$SCRATCH/fuzz-build.log" 2>&1 &
FUZZ_BUILD=$!

log "docker-compose config (validates both compose files; no Docker engine needed)"
command -v docker-compose >/dev/null || apt_install docker-compose
SECRET_KEY=validation-only docker-compose config -q
SECRET_KEY=validation-only docker-compose -f docker-compose.cluster.yml config -q

# Three tests per core: the integration tests spend most of their time
# waiting on sockets, timers and the servers they start (two at a time kept
# the cores 58 % busy), so more of them at once finish sooner.
TEST_THREADS=${TEST_THREADS:-$(( $(nproc) * 3 ))}
log "cargo test, $TEST_THREADS at a time (with the Django cut-over tests: Django 5.2 + DRF + SimpleJWT as the oracle)"
DJANGO_PYTHON=$(django_python)
export DJANGO_PYTHON
cargo test --workspace -- --include-ignored --test-threads "$TEST_THREADS"
log "cargo doc: the layout doc's and every module header's links resolve"
RUSTDOCFLAGS="-D warnings -A rustdoc::private-intra-doc-links" \
  cargo doc --workspace --no-deps --document-private-items --quiet

loadtest_smoke
callgrind_smoke
targets_smoke
browser_test
client_test
proxy_test
fuzz_beside_schemathesis
drop_test_databases
log "all checks passed"
