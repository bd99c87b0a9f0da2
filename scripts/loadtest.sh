#!/usr/bin/env bash
# Runs one load-test scenario against a fresh server: release build, a fresh
# database (chat_loadtest), the server on a free port, then
# `loadtest <scenario> --url ... <your flags>`, with DATABASE_URL and SECRET_KEY
# set so setup is done in bulk. Example:
#   scripts/loadtest.sh chat --pairs 100 --window 16 --duration 10 --json chat.json
# Server settings can be passed as environment variables (WRITER_LANES=8 ...).
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:?usage: scripts/loadtest.sh <chat|connect|rest|verify> [flags]}; shift

cargo build -q --release -p chat-server -p loadtest
PG=${PG:-"postgres://postgres@127.0.0.1:5432"}
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS chat_loadtest" >/dev/null
export DATABASE_URL="$PG/chat_loadtest"
export SECRET_KEY=${SECRET_KEY:-loadtest-secret-0123456789abcdef0123456789}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
BIND="127.0.0.1:$port" RUST_LOG=${RUST_LOG:-warn} target/release/chat-server > /tmp/chat-server-loadtest.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/api/chat/chats/" && break; sleep 0.1; done
extra=()
[[ $scenario == connect ]] && extra=(--server-pid "$pid")
target/release/loadtest "$scenario" --url "http://127.0.0.1:$port" "${extra[@]}" "$@"
