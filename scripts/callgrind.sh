#!/usr/bin/env bash
# Counts the server's instructions over one load-test scenario with valgrind's
# callgrind: a fresh database, the release server under callgrind on a free port,
# counters zeroed once it answers /healthz (start-up and migrations left out),
# then `loadtest <scenario> --url ... <your flags>`, then a dump. Instruction
# counts repeat from run to run whatever else the machine does, so two builds can
# be compared without the noise of a shared two-core box. Example:
#   scripts/callgrind.sh connect --connections 2000 --duration 1
#   scripts/callgrind.sh chat --pairs 20 --window 16 --duration 4
#   scripts/callgrind.sh inbox --users 200 --chats-per-user 20 --senders 20 --duration 4
# Prints the total and the total per delivered item (socket, message, request);
# the profile is left in $CALLGRIND_OUT (default /tmp/chat-server.callgrind) for
# `callgrind_annotate --inclusive=yes`. SERVER_BIN / LOADTEST_BIN run other builds.
# Valgrind cannot run SHA extensions, so SHA-256 (token signatures) is counted
# in its portable form, several times what the hardware path executes.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:?usage: scripts/callgrind.sh <chat|inbox|connect|rest> [flags]}; shift
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }

# Given both binaries (SERVER_BIN and LOADTEST_BIN), nothing is built.
[[ -n ${SERVER_BIN:-} && -n ${LOADTEST_BIN:-} ]] || cargo build -q --release -p chat-server -p loadtest
PG=${PG:-"postgres://postgres@127.0.0.1:5432"}
out=${CALLGRIND_OUT:-/tmp/chat-server.callgrind}
export SECRET_KEY=${SECRET_KEY:-loadtest-secret-0123456789abcdef0123456789}
export RATE_LIMIT_SENDS_PER_SEC=${RATE_LIMIT_SENDS_PER_SEC:-0} RATE_LIMIT_AUTH_PER_MIN=${RATE_LIMIT_AUTH_PER_MIN:-0}
export RATE_LIMIT_NEW_CHATS_PER_MIN=${RATE_LIMIT_NEW_CHATS_PER_MIN:-0}
export WS_MAX_SOCKETS_PER_USER=0 MAX_CONNECTIONS_PER_ADDRESS=0
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS chat_loadtest" >/dev/null 2>&1
# Plain TCP to the database: OpenSSL's instructions would count as the server's.
export DATABASE_URL="$PG/chat_loadtest?sslmode=disable"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -f "$out" "$out".*
BIND="127.0.0.1:$port" RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" \
  "${SERVER_BIN:-target/release/chat-server}" > /tmp/chat-server-callgrind.log 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.2; done
callgrind_control -z "$pid" >/dev/null 2>&1
extra=()
[[ $scenario == connect ]] && extra=(--server-pid "$pid")
summary=$("${LOADTEST_BIN:-target/release/loadtest}" "$scenario" --url "http://127.0.0.1:$port" "${extra[@]}" "$@")
echo "$summary"
callgrind_control -d "$pid" >/dev/null 2>&1
kill "$pid"; wait "$pid" 2>/dev/null || true
trap - EXIT
dump=$(ls "$out".* | head -1)
mv "$dump" "$out"
total=$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
items=$(echo "$summary" | awk '/^delivered/ {print $2}')
echo "instructions  $total (${items:-?} delivered, $(( total / ${items:-1} )) per item)"
echo "profile       $out"
