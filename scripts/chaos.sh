#!/usr/bin/env bash
# Chaos: two nodes on a PostgreSQL and a Redis of this run's own, under
# `loadtest verify` (REST sends round-robin over the nodes, every failed attempt
# retried on the next node with the same client_msg_id; WebSockets that drop at
# random and resume with after_seq), while
#   - node 2 is killed with -9 and restarted every KILL_EVERY seconds (30),
#   - Redis is restarted at 45 s and every 90 s after,
#   - PostgreSQL is restarted (immediate shutdown: a crash) at 75 s and every
#     90 s after.
# It prints acknowledged, stored, lost, duplicated, out of order, 5xx answers,
# unreachable attempts, restarts, and each node's RSS at the start and the end,
# and fails unless lost, duplicated, out of order and 5xx are all 0 and every
# acknowledged message is stored.
#
#   scripts/chaos.sh                      180 s, 8 pairs at 20 msg/s each
#   DURATION=300 PAIRS=16 scripts/chaos.sh
#   USER_SOCKETS=1 scripts/chaos.sh       receivers on user sockets, resuming with sync
#
# Loopback only; everything it starts is stopped when it ends. SERVER_BIN and
# LOADTEST_BIN pick the builds (default: a debug build of this tree).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-180} pairs=${PAIRS:-8} rate=${RATE:-20} churn=${CHURN_MS:-700}
kill_every=${KILL_EVERY:-30}
server=${SERVER_BIN:-target/debug/chat-server} tool=${LOADTEST_BIN:-target/debug/loadtest}
[[ -n ${SERVER_BIN:-} && -n ${LOADTEST_BIN:-} ]] || cargo build -q -p chat-server -p loadtest

scratch=$(mktemp -d /tmp/chat-chaos.XXXXXX)
# Free ports below the kernel's range for connections' own ports (a port
# from that range, freed by a kill, may be handed to one of the tool's
# connections before the node, Redis or PostgreSQL binds it again), as many
# as asked and all different: each is held until all are found.
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
held = []
while len(held) < int(sys.argv[1]):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randrange(10000, low)))
    except OSError:
        s.close()
        continue
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
}
as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
read -r pg_port redis_port node_port_1 node_port_2 < <(free_ports 4)
node_pids=(0 0) node_ports=("$node_port_1" "$node_port_2")

cleanup() {
  for pid in "${node_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  as_postgres "$pg_bin/pg_ctl" -D "$scratch/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT

pg_ctl() {
  as_postgres "$pg_bin/pg_ctl" -D "$scratch/pg" -l "$scratch/pg.log" -w -m immediate \
    -o "-p $pg_port -k $scratch -c listen_addresses=127.0.0.1" "$@" >/dev/null
}
start_redis() {
  redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --dir "$scratch" --logfile "$scratch/redis.log" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return; sleep 0.1; done
}
start_node() { # index
  local i=$1
  env DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/chat" REDIS_URL="redis://127.0.0.1:$redis_port/" \
    SECRET_KEY=chaos-secret-0123456789abcdef0123456789 BIND="127.0.0.1:${node_ports[$i]}" RUST_LOG=warn \
    RATE_LIMIT_SENDS_PER_SEC=0 RATE_LIMIT_AUTH_PER_MIN=0 RATE_LIMIT_NEW_CHATS_PER_MIN=0 \
    WS_MAX_SOCKETS_PER_USER=0 MAX_CONNECTIONS_PER_ADDRESS=0 \
    "$server" >> "$scratch/node$i.log" 2>&1 &
  node_pids[i]=$!
  disown "${node_pids[i]}" # killed on purpose: no job report
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:${node_ports[$i]}/healthz" && return; sleep 0.1; done
  echo "chaos: node $((i + 1)) did not start:" >&2
  tail -n 20 "$scratch/node$i.log" >&2
  exit 1
}
# kill -9, then wait until the process is gone (dead or a zombie): its
# listening socket is closed only then, and a node started sooner on its port
# fails to bind. (`wait` cannot: the node is disowned.)
kill_node() { # index
  local pid=${node_pids[$1]}
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 200); do
    [[ ! -e /proc/$pid ]] || grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return
    sleep 0.05
  done
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }

mkdir -p "$scratch/pg"
[[ $(id -u) -eq 0 ]] && chown -R postgres "$scratch"
as_postgres "$pg_bin/initdb" -D "$scratch/pg" -U postgres --auth=trust >/dev/null
pg_ctl start
start_redis
start_node 0
start_node 1
urls="http://127.0.0.1:${node_ports[0]},http://127.0.0.1:${node_ports[1]}"

"$tool" verify --url "$urls" --pairs "$pairs" --rate-per-pair "$rate" --churn-ms "$churn" \
  --duration "$duration" ${USER_SOCKETS:+--user-sockets} --json "$scratch/verify.json" > "$scratch/verify.log" 2>&1 &
verify=$!
sleep 3 # accounts and chats are set up; the senders run
rss_start=("$(rss_kib "${node_pids[0]}")" "$(rss_kib "${node_pids[1]}")")
echo "chaos: $duration s, $pairs pairs at $rate msg/s, nodes on ports ${node_ports[*]}"

kills=0 redis_restarts=0 pg_restarts=0 started=$SECONDS
while kill -0 "$verify" 2>/dev/null && (( SECONDS - started < duration )); do
  sleep 1
  t=$(( SECONDS - started ))
  if (( t % kill_every == 0 )); then
    kill_node 1
    start_node 1; kills=$((kills + 1)); echo "  ${t}s: node 2 killed (-9) and restarted"
  fi
  if (( t % 90 == 45 )); then
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    sleep 1; start_redis; redis_restarts=$((redis_restarts + 1)); echo "  ${t}s: Redis restarted"
  fi
  if (( t % 90 == 75 )); then
    pg_ctl restart; pg_restarts=$((pg_restarts + 1)); echo "  ${t}s: PostgreSQL restarted (immediate)"
  fi
done
rss_end=("$(rss_kib "${node_pids[0]}")" "$(rss_kib "${node_pids[1]}")")
status=0
wait "$verify" || status=$?

python3 - "$scratch/verify.json" "$kills" "$redis_restarts" "$pg_restarts" \
  "${rss_start[0]}" "${rss_end[0]}" "${rss_start[1]}" "${rss_end[1]}" <<'EOF' || status=1
import json, sys
r = json.load(open(sys.argv[1]))
kills, redis, pg, rss0a, rss0b, rss1a, rss1b = sys.argv[2:9]
rows = [
    ("acknowledged", r["acknowledged"]), ("stored", r["stored"]),
    ("lost", r["lost"]), ("duplicated", r["duplicated"]), ("out of order", r["out_of_order"]),
    ("5xx answers", r["server_errors"]), ("other refusals", r["errors"] - r["server_errors"]),
    ("unreachable attempts", r["unreachable"]), ("deliveries checked", r["delivered"]),
    ("socket reconnects", r["reconnects"]),
    ("node kills (-9)", kills), ("Redis restarts", redis), ("PostgreSQL restarts", pg),
    ("node 1 RSS start -> end", f"{rss0a} -> {rss0b} KiB (never killed)"),
    ("node 2 RSS start -> end", f"{rss1a} -> {rss1b} KiB (its last incarnation at the end)"),
]
for name, value in rows:
    print(f"{name:<26} {value}")
bad = r["lost"] or r["duplicated"] or r["out_of_order"] or r["errors"] or r["stored"] < r["acknowledged"] or r.get("problems")
print("chaos:", "FAILED" if bad else "passed")
sys.exit(1 if bad else 0)
EOF
if (( status != 0 )); then
  tail -n 30 "$scratch/verify.log"; grep -hE "ERROR|panicked" "$scratch"/node*.log | tail -n 20
fi
exit "$status"
