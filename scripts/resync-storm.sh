#!/usr/bin/env bash
# A bus outage under a full house: NODES nodes (default 3) share a database
# and a throwaway Redis of their own; `loadtest connect --user-sockets` opens
# CONNS user sockets (default 50,000, users of CHATS chats each, default 100)
# and holds them; once all are open, the Redis is restarted, so every socket
# of every node resyncs at once. Prints, each second, the sockets still open
# and the resyncs done, summed over the nodes, then how many sockets closed
# and why (the nodes' warnings). Example:
#   SERVER_BIN=target/release/chat-server scripts/resync-storm.sh
# MESSAGES=1 first gives every chat one message (its sockets, which synced
# `{}`, then have no position in it: each reads where its chats stand and
# closes with 4009, the reads' worst case). The tables are analyzed once set up: a deployment's autovacuum has done so
# long before, and a bulk load without statistics gets plans no deployment
# runs. PER_CHAT=1 holds per-chat sockets instead (one per pair's user).
# SYNC_EVERY_CHAT=1 has each user socket name every chat in its `sync`, as
# our client does: with MESSAGES=1 each then catches up in place (it reads
# where its chats stand and replays one message per chat).
# Loopback only; bounded by HOLD (default 45 s of hold).
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${NODES:-3} conns=${CONNS:-50000} procs=${PROCS:-3} chats=${CHATS:-100}
sockets="--user-sockets --chats-per-user $chats"
[[ ${PER_CHAT:-0} == 1 ]] && sockets=""
[[ ${SYNC_EVERY_CHAT:-0} == 1 ]] && sockets+=" --sync-every-chat"
[[ -n ${SERVER_BIN:-} && -n ${LOADTEST_BIN:-} ]] || cargo build -q --release -p chat-server -p loadtest
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_redis() { redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no >/dev/null; }
start_redis
trap 'redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true' EXIT
NODES=$nodes REDIS_URL="redis://127.0.0.1:$redis_port/" WS_PING_INTERVAL_SECS=${WS_PING_INTERVAL_SECS:-5} \
  scripts/loadtest.sh connect --connections "$conns" --processes "$procs" --duration "${HOLD:-45}" \
  $sockets > /tmp/resync-storm.out 2>&1 &
tester=$!
ports=()
for _ in $(seq 600); do
  mapfile -t ports < <(ss -ltnp 2>/dev/null | grep chat-server | grep -o '127.0.0.1:[0-9]*' || true)
  (( ${#ports[@]} >= nodes )) && break; sleep 0.5
done
total() { for p in "${ports[@]}"; do timeout 2 curl -s "http://$p/metrics" || true; done | awk -v m="$1" '$1 == m {s += $2} END {print s + 0}'; }
for _ in $(seq 1200); do (( $(total chat_websocket_connections_open) >= conns )) && break; sleep 0.5; done
if [[ ${MESSAGES:-0} == 1 ]]; then
  psql -qh 127.0.0.1 -U postgres chat_loadtest -c "
    WITH c AS (UPDATE chats SET last_seq = 1, low_read_seq = 1 RETURNING id, user_low)
    INSERT INTO messages (chat_id, seq, sender_id, content, metadata, created_at)
    SELECT id, 1, user_low, 'hello', '{}', now() FROM c"
fi
psql -qh 127.0.0.1 -U postgres chat_loadtest -c ANALYZE
echo "held: $(total chat_websocket_connections_open) sockets, $(total chat_ws_resyncs_total) resyncs so far; restarting Redis"
redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
sleep 1
start_redis
began=$(date +%s.%N)
for _ in $(seq "${WATCH:-25}"); do
  sleep 1
  printf '%5.1f s  open %s  resyncs %s\n' "$(echo "$(date +%s.%N) - $began" | bc)" \
    "$(total chat_websocket_connections_open)" "$(total chat_ws_resyncs_total)"
done
echo "closed: $((conns - $(total chat_websocket_connections_open))) of $conns"
wait "$tester" || true
for n in $(seq "$nodes"); do
  grep -h WARN "/tmp/chat-server-loadtest-$n.log" | sed 's/\x1b\[[0-9;]*m//g; s/.*WARN //' | cut -c1-120
done | sort | uniq -c | sort -rn | head -5
