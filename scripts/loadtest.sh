#!/usr/bin/env bash
# Runs one load-test scenario against a fresh server: release build, a fresh
# database (chat_loadtest), the server on a free port, then
# `loadtest <scenario> --url ... <your flags>`, with DATABASE_URL and SECRET_KEY
# set so setup is done in bulk. Example:
#   scripts/loadtest.sh chat --pairs 100 --window 16 --duration 10 --json chat.json
# Server settings can be passed as environment variables (WRITER_LANES=8 ...).
# SERVER_BIN=path / LOADTEST_BIN=path run other builds (A/B comparisons of two
# commits); given both, nothing is built.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:?usage: scripts/loadtest.sh <chat|inbox|connect|rest|verify> [flags]}; shift

[[ -n ${SERVER_BIN:-} && -n ${LOADTEST_BIN:-} ]] || cargo build -q --release -p chat-server -p loadtest
PG=${PG:-"postgres://postgres@127.0.0.1:5432"}
export SECRET_KEY=${SECRET_KEY:-loadtest-secret-0123456789abcdef0123456789}
# A load test is one client sending as fast as it can: lift the abuse limits.
export RATE_LIMIT_SENDS_PER_SEC=${RATE_LIMIT_SENDS_PER_SEC:-0} RATE_LIMIT_AUTH_PER_MIN=${RATE_LIMIT_AUTH_PER_MIN:-0}
export RATE_LIMIT_NEW_CHATS_PER_MIN=${RATE_LIMIT_NEW_CHATS_PER_MIN:-0}
export WS_MAX_SOCKETS_PER_USER=${WS_MAX_SOCKETS_PER_USER:-0} MAX_CONNECTIONS_PER_ADDRESS=${MAX_CONNECTIONS_PER_ADDRESS:-0}
# STORE=sqlite runs the server on its embedded store (a fresh DATA_DIR); the tool
# then sets up users through the API.
if [[ ${STORE:-postgres} == sqlite ]]; then
  export DATA_DIR; DATA_DIR=$(mktemp -d /tmp/chat-loadtest-data.XXXXXX)
  unset DATABASE_URL
else
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS chat_loadtest" >/dev/null
  # Plain TCP to the database on loopback unless PG_SSLMODE says otherwise
  # (prefer: TLS for the server; the tool's own connection falls back to plain).
  export DATABASE_URL="$PG/chat_loadtest?sslmode=${PG_SSLMODE:-disable}"
fi
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# NODES=2 (or more) starts that many nodes sharing the database and Redis
# (REDIS_URL, default redis://127.0.0.1:6379/, or a Redis Cluster given as
# REDIS_CLUSTER_URLS); the tool gets every node's URL.
nodes=${NODES:-1}
if (( nodes > 1 )) && [[ -z ${REDIS_CLUSTER_URLS:-} ]]; then
  export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/}
fi
pids=() urls=()
trap 'kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true' EXIT
for n in $(seq "$nodes"); do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  BIND="127.0.0.1:$port" RUST_LOG=${RUST_LOG:-warn} "${SERVER_BIN:-target/release/chat-server}" > "/tmp/chat-server-loadtest-$n.log" 2>&1 &
  pids+=($!) urls+=("http://127.0.0.1:$port")
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
done
extra=()
[[ $scenario == connect || $scenario == chat || $scenario == inbox || $scenario == rest ]] && extra=(--server-pid "$(IFS=,; echo "${pids[*]}")")
url=$(IFS=,; echo "${urls[*]}")
"${LOADTEST_BIN:-target/release/loadtest}" "$scenario" --url "$url" "${extra[@]}" "$@"
