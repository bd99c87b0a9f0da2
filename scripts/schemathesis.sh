#!/usr/bin/env bash
# Property-based API tests against the OpenAPI document (schemathesis, from
# PyPI), on the binary started with zero configuration in a scratch directory.
#
#   scripts/schemathesis.sh                  one run: the fixed seed and the five
#                                            checks of the test command (CI)
#   scripts/schemathesis.sh --install-only
#                                            installs schemathesis and stops
#   SCHEMATHESIS_MINUTES=10 scripts/schemathesis.sh
#                                            runs with random seeds, every check,
#                                            every operation, until
#                                            the minutes are up; fails on the first
#                                            failure and prints its seed
#
# SERVER_BIN picks the binary (default target/debug/chat-server, built when
# missing). tests/schemathesis/schemathesis.toml says which checks are off where,
# and why.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v schemathesis >/dev/null || python3 -m pip install -q "schemathesis==4.32.5"
[[ ${1:-} != --install-only ]] || exit 0
server=${SERVER_BIN:-target/debug/chat-server}
[[ -x $server ]] || cargo build -q -p chat-server
server=$(realpath "$server") config=$(realpath tests/schemathesis/schemathesis.toml)
scratch=$(mktemp -d /tmp/chat-schemathesis.XXXXXX)
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$scratch"; }
trap cleanup EXIT

# A fresh server with two users and their chat; sets $url and $token.
start_server() {
  [[ -n $pid ]] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }
  local port dir
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  dir=$(mktemp -d "$scratch/run.XXXXXX")
  url="http://127.0.0.1:$port"
  env -i -C "$dir" BIND="127.0.0.1:$port" ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 \
    RATE_LIMIT_SENDS_PER_SEC=0 RATE_LIMIT_AUTH_PER_MIN=0 \
    RATE_LIMIT_SEARCH_PER_MIN=0 RATE_LIMIT_LOGIN_FAILURES_PER_EMAIL_PER_MIN=0 RATE_LIMIT_NEW_CHATS_PER_MIN=0 \
    "$server" > "$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "$url/healthz" && break; sleep 0.1; done
  for who in ann bob; do
    curl -s -o /dev/null -XPOST "$url/auth/register/" -H 'Content-Type: application/json' \
      -d "{\"email\":\"$who@example.com\",\"password\":\"correct horse\",\"full_name\":\"$who\"}"
  done
  token=$(curl -s -XPOST "$url/auth/login/" -H 'Content-Type: application/json' \
    -d '{"email":"ann@example.com","password":"correct horse"}' | python3 -c 'import sys, json; print(json.load(sys.stdin)["access"])')
  curl -s -o /dev/null -XPOST "$url/api/chat/start/" -H "Authorization: Bearer $token" -d '{"user_id": 2}'
  cd "$dir"
}

if [[ -z ${SCHEMATHESIS_MINUTES:-} ]]; then
  start_server
  status=0
  schemathesis --config-file "$config" run "$url/api/schema/" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
    -H "Authorization: Bearer $token" --max-examples 60 --exclude-path-regex '^/ws/' \
    --seed "${SCHEMATHESIS_SEED:-20261125}" > "$scratch/run.log" 2>&1 || status=$?
  grep -E "generated|passed|failures" "$scratch/run.log" | tail -n 3 || true
  if [[ $status -ne 0 ]]; then cat "$scratch/run.log"; exit "$status"; fi
  exit 0
fi

deadline=$(( SECONDS + SCHEMATHESIS_MINUTES * 60 )) runs=0 generated=0
while (( SECONDS < deadline )); do
  seed=$(( (RANDOM << 15) | RANDOM ))
  start_server
  # No --checks: every check runs (the configuration's per-operation
  # exceptions apply only when the command line does not name the checks).
  if ! schemathesis --config-file "$config" run "$url/api/schema/" \
      -H "Authorization: Bearer $token" --max-examples 100 --seed "$seed" > "$scratch/run.log" 2>&1; then
    cat "$scratch/run.log"
    echo "schemathesis soak: seed $seed FAILED after $runs clean runs" >&2
    exit 1
  fi
  runs=$((runs + 1))
  n=$(grep -oE '[0-9]+ generated' "$scratch/run.log" | tail -n1 | cut -d' ' -f1)
  generated=$((generated + ${n:-0}))
  echo "seed $seed: ${n:-?} test cases, no failure"
done
echo "schemathesis soak: $runs runs with random seeds, $generated test cases, every check, every operation, no failure"
