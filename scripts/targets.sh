#!/usr/bin/env bash
# Runs every scenario the throughput targets name, one after another, each
# against a fresh server and database (through scripts/loadtest.sh), then
# `loadtest targets` prints each target with what this run measured and whether
# it was met. The ratios (chat to echo, persisted to store ceiling, connect to
# the connect ceiling) come from this one run, as a shared machine's noise
# demands. Example:
#   scripts/targets.sh                   # release build, the targets' own sizes
#   DURATION=5 scripts/targets.sh        # shorter runs
# The reports stay in $TARGETS_OUT (default: a new /tmp/chat-targets.* directory).
# Sizes: PAIRS (100; also inbox's senders), WINDOW (16), RATE (10000), CONCURRENCY (64),
# CONNECTIONS (50000; per-chat and user sockets alike), USERS (2000) and
# CHATS_PER_USER (20) for inbox, USER_SOCKET_CHATS (100) for connect-user,
# DURATION (10 s per scenario; rest runs it per phase),
# HOLD (8 s: how long connect holds its sockets; the servers ping every PING_SECS,
# default 3, so the memory read at the end of the hold is after a ping round),
# SYNC_HOLD (20 s: the same for the user sockets whose first sync names every
# chat, as our client's does; user sockets' holds count from when every
# socket's sync was answered, and such a storm's freed memory takes a few
# seconds more to go back to the system, see BENCHMARKS.md).
# STRICT=1 exits non-zero when a target is not met.
# SERVER_BIN / LOADTEST_BIN run other builds (nothing is built when both are given).
# CONNECTIONS beyond one process's file limit are spread over as many nodes and
# tester processes as the limit needs (3 + 3 for 50,000 under a 20,000 limit).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${SERVER_BIN:-} || -z ${LOADTEST_BIN:-} ]]; then
  cargo build -q --release -p chat-server -p loadtest
fi
export SERVER_BIN=${SERVER_BIN:-target/release/chat-server} LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
PG=${PG:-"postgres://postgres@127.0.0.1:5432"}
export PG
out=${TARGETS_OUT:-$(mktemp -d /tmp/chat-targets.XXXXXX)}
mkdir -p "$out"
duration=${DURATION:-10} pairs=${PAIRS:-100} window=${WINDOW:-16} rate=${RATE:-10000}
concurrency=${CONCURRENCY:-64} connections=${CONNECTIONS:-50000} hold=${HOLD:-8} ping=${PING_SECS:-3}
users=${USERS:-2000} chats=${CHATS_PER_USER:-20} user_chats=${USER_SOCKET_CHATS:-100}
sync_hold=${SYNC_HOLD:-20}

ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
limit=$(ulimit -n)
[[ $limit == unlimited ]] && limit=1048576
per_process=$(( limit - 1000 ))
processes=$(( (connections + per_process - 1) / per_process ))

failed=()
# run NAME COMMAND...: the scenario's report goes to $out/NAME.json, its output
# to $out/NAME.log; a scenario that fails is named at the end.
run() {
  local name=$1; shift
  echo "== $name: $*"
  if "$@" --json "$out/$name.json" > "$out/$name.log" 2>&1; then
    grep -E '^(delivered|latency ms|errors|connect_per_s|rss_per_connection_end_of_hold_bytes|sends_per_s|reads_per_s) ' "$out/$name.log" || true
  else
    echo "$name failed (exit $?); see $out/$name.log"
    failed+=("$name")
  fi
}

run echo "$LOADTEST_BIN" echo --connections "$pairs" --window "$window" --duration "$duration"
run store-ceiling "$LOADTEST_BIN" store-ceiling --database-url "$PG/postgres" --duration "$duration"
run chat scripts/loadtest.sh chat --pairs "$pairs" --window "$window" --duration "$duration"
run chat-rate scripts/loadtest.sh chat --pairs "$pairs" --window "$window" --rate "$rate" --duration "$duration"
run inbox scripts/loadtest.sh inbox --users "$users" --chats-per-user "$chats" --senders "$pairs" --window "$window" --duration "$duration"
run rest scripts/loadtest.sh rest --concurrency "$concurrency" --duration "$duration"
run connect env NODES="$processes" WS_PING_INTERVAL_SECS="$ping" scripts/loadtest.sh connect --connections "$connections" \
  --processes "$processes" --duration "$hold"
run connect-user env NODES="$processes" WS_PING_INTERVAL_SECS="$ping" scripts/loadtest.sh connect --user-sockets \
  --chats-per-user "$user_chats" --connections "$connections" --processes "$processes" --duration "$hold"
run connect-user-sync env NODES="$processes" WS_PING_INTERVAL_SECS="$ping" scripts/loadtest.sh connect --user-sockets \
  --sync-every-chat --chats-per-user "$user_chats" --connections "$connections" --processes "$processes" \
  --duration "$sync_hold"
run connect-ceiling "$LOADTEST_BIN" connect --ceiling --connections "$connections" \
  --processes "$processes" --duration "$hold"

echo
echo "Reports in $out ($(nproc) cores; connect over $processes node(s) and tester process(es))"
"$LOADTEST_BIN" targets --reports "$out" --connections "$connections" --json "$out/targets.json" \
  ${STRICT:+--strict}
if (( ${#failed[@]} > 0 )); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
