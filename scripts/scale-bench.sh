#!/usr/bin/env bash
# Scaling out on existing engines, measured side by side (BENCHMARKS.md):
#   1. `loadtest chat` across three nodes on a Redis Cluster (three primaries,
#      a replica each: sharded pub/sub) against the same three nodes on one
#      Redis with a replica (the same durability: each side replicates every
#      publish once), interleaved ROUNDS times (odd rounds one Redis first,
#      even rounds the cluster first); after each cluster run, how
#      many SPUBLISH each primary executed (its own channels' events only).
#   2. `loadtest rest` on one node reading from two streaming standbys
#      (DATABASE_READ_URLS) against the same node with none, interleaved.
# Everything runs from the installed binaries on free ports in a scratch
# directory and is torn down at the end. Example:
#   scripts/scale-bench.sh                      # release build, 10 s runs, 2 rounds
#   ROUNDS=1 DURATION=3 scripts/scale-bench.sh
# Sizes: PAIRS (100), WINDOW (16), CONCURRENCY (64), DURATION (10), ROUNDS (2).
# ONLY=redis or ONLY=postgres runs one of the two. REPLICAS=0 makes the cluster
# three primaries alone and the one Redis alone (what the replicas cost, on
# shared cores); SINGLE_REPLICA=0 leaves the one Redis alone against a
# cluster with replicas.
# REDIS_SERVER / REDIS_CLI run other Redis builds (default: the installed
# redis-server and redis-cli; Valkey's binaries take the same arguments).
# SERVER_BIN / LOADTEST_BIN run other builds (nothing is built when both are given).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${SERVER_BIN:-} || -z ${LOADTEST_BIN:-} ]]; then
  cargo build -q --release -p chat-server -p loadtest
fi
export SERVER_BIN=${SERVER_BIN:-target/release/chat-server} LOADTEST_BIN=${LOADTEST_BIN:-target/release/loadtest}
duration=${DURATION:-10} pairs=${PAIRS:-100} window=${WINDOW:-16} concurrency=${CONCURRENCY:-64}
rounds=${ROUNDS:-2}
redis_server=${REDIS_SERVER:-redis-server} redis_cli=${REDIS_CLI:-redis-cli}
scratch=$(mktemp -d /tmp/chat-scale.XXXXXX)
out=${SCALE_OUT:-$scratch/reports}
mkdir -p "$out"
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
redis_ports=(7101 7102 7103 7104 7105 7106) single_redis=7100 single_replica=7107
replicas=${REPLICAS:-1}
(( replicas > 0 )) || redis_ports=(7101 7102 7103)
single_replicas=${SINGLE_REPLICA:-$replicas}
pg_ports=(54401 54402 54403)

as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
  for port in "$single_redis" "$single_replica" "${redis_ports[@]}"; do "$redis_cli" -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
  for n in 0 1 2; do as_postgres "$pg_bin/pg_ctl" -D "$scratch/pg$n" -m immediate stop >/dev/null 2>&1 || true; done
  rm -rf "$scratch/pg0" "$scratch/pg1" "$scratch/pg2" "$scratch"/redis-*
}
trap cleanup EXIT

start_redis() { # port, extra args...
  local port=$1; shift
  mkdir -p "$scratch/redis-$port"
  "$redis_server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$scratch/redis-$port" --logfile "$scratch/redis-$port/log" "$@"
  until "$redis_cli" -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
}

start_redis_cluster() {
  for port in "${redis_ports[@]}"; do
    start_redis "$port" --cluster-enabled yes --cluster-node-timeout 5000 --repl-diskless-sync-delay 0
  done
  "$redis_cli" --cluster create $(printf '127.0.0.1:%s ' "${redis_ports[@]}") --cluster-replicas "$replicas" \
    --cluster-yes >/dev/null
  for port in "${redis_ports[@]}"; do
    until "$redis_cli" -p "$port" cluster info | grep -q cluster_state:ok; do sleep 0.2; done
  done
}

primaries() {
  for port in "${redis_ports[@]}"; do
    "$redis_cli" -p "$port" role | head -n1 | grep -q master && echo "$port"
  done
}

# CPU seconds a Redis process has used (user + system).
redis_cpu() { # port
  local pid
  pid=$("$redis_cli" -p "$1" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($14 + $15) / hz }' "/proc/$pid/stat"
}

cpu_sum() { # ports...
  local total=0 port
  for port in "$@"; do total=$(python3 -c "print($total + $(redis_cpu "$port"))"); done
  echo "$total"
}

# Microseconds of CPU per delivered message: cpu_us DELTA_S REPORT
cpu_us() {
  python3 -c 'import json,sys; r=json.load(open(sys.argv[2])); print(round(float(sys.argv[1]) * 1e6 / max(r["delivered"], 1), 1))' "$1" "$2"
}

# Reads Redis made from its clients' sockets (each a wake-up's worth of
# commands), summed over ports.
reads_sum() { # ports...
  local total=0 port
  for port in "$@"; do
    total=$(( total + $("$redis_cli" -p "$port" info stats | sed -n 's/^total_reads_processed:\([0-9]*\).*/\1/p') ))
  done
  echo "$total"
}

# Per thousand delivered messages: per_k COUNT REPORT
per_k() {
  python3 -c 'import json,sys; r=json.load(open(sys.argv[2])); print(round(float(sys.argv[1]) * 1e3 / max(r["delivered"], 1), 1))' "$1" "$2"
}

spublish_calls() { # port
  "$redis_cli" -p "$1" info commandstats | sed -n 's/^cmdstat_spublish:calls=\([0-9]*\),.*/\1/p' | grep . || echo 0
}

# A primary and two asynchronous streaming standbys.
start_postgres() {
  mkdir -p "$scratch"
  [[ $(id -u) -eq 0 ]] && chown postgres "$scratch"
  as_postgres "$pg_bin/initdb" -D "$scratch/pg0" -U postgres --auth=trust >/dev/null
  printf "wal_level = replica\nmax_wal_senders = 8\nhot_standby = on\n" >> "$scratch/pg0/postgresql.conf"
  pg_start 0
  for n in 1 2; do
    as_postgres "$pg_bin/pg_basebackup" -h 127.0.0.1 -p "${pg_ports[0]}" -U postgres -D "$scratch/pg$n" -R -X stream
    pg_start "$n"
  done
}

pg_start() { # n
  as_postgres "$pg_bin/pg_ctl" -D "$scratch/pg$1" -l "$scratch/pg$1.log" -w \
    -o "-p ${pg_ports[$1]} -k $scratch -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
}

figure() { # report, field
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

if [[ ${ONLY:-redis} == redis ]]; then
echo "== Redis: one ($single_replicas replica) against a cluster of three primaries ($replicas replica each), three nodes, $pairs pairs, ${duration} s"
start_redis "$single_redis"
single_ports=("$single_redis")
if (( single_replicas > 0 )); then
  start_redis "$single_replica" --replicaof 127.0.0.1 "$single_redis"
  until "$redis_cli" -p "$single_replica" info replication | grep -q master_link_status:up; do sleep 0.2; done
  single_ports+=("$single_replica")
fi
start_redis_cluster
cluster_urls=$(printf 'redis://127.0.0.1:%s,' "${redis_ports[@]}"); cluster_urls=${cluster_urls%,}
# One round's run on one Redis, and on the cluster (with each primary's SPUBLISH).
run_single() {
  local round=$1
  single_before=$(redis_cpu "$single_redis") single_replica_before=$(cpu_sum "${single_ports[@]:1}")
  single_reads=$(reads_sum "$single_redis")
  NODES=3 REDIS_URL="redis://127.0.0.1:$single_redis/" scripts/loadtest.sh chat --pairs "$pairs" \
    --window "$window" --duration "$duration" --json "$out/single-$round.json" > "$out/single-$round.log"
  single_cpu=$(python3 -c "print($(redis_cpu "$single_redis") - $single_before)")
  single_replica_cpu=$(python3 -c "print($(cpu_sum "${single_ports[@]:1}") - $single_replica_before)")
  single_reads=$(( $(reads_sum "$single_redis") - single_reads ))
}
run_cluster() {
  local round=$1
  mapfile -t primary_ports < <(primaries)
  replica_ports=()
  for port in "${redis_ports[@]}"; do
    [[ " ${primary_ports[*]} " == *" $port "* ]] || replica_ports+=("$port")
  done
  declare -gA before=()
  for port in "${primary_ports[@]}"; do before[$port]=$(spublish_calls "$port"); done
  primaries_before=$(cpu_sum "${primary_ports[@]}") replicas_before=$(cpu_sum "${replica_ports[@]}")
  primaries_reads=$(reads_sum "${primary_ports[@]}")
  NODES=3 REDIS_CLUSTER_URLS="$cluster_urls" scripts/loadtest.sh chat --pairs "$pairs" \
    --window "$window" --duration "$duration" --json "$out/cluster-$round.json" > "$out/cluster-$round.log"
  primaries_cpu=$(python3 -c "print($(cpu_sum "${primary_ports[@]}") - $primaries_before)")
  replicas_cpu=$(python3 -c "print($(cpu_sum "${replica_ports[@]}") - $replicas_before)")
  primaries_reads=$(( $(reads_sum "${primary_ports[@]}") - primaries_reads ))
}
# Odd rounds run one Redis first, even rounds the cluster first: a machine
# that speeds up or slows down over the rounds favours neither side.
for round in $(seq "$rounds"); do
  if (( round % 2 )); then
    run_single "$round"; run_cluster "$round"; first="one Redis"
  else
    run_cluster "$round"; run_single "$round"; first="cluster"
  fi
  shards=""
  for port in "${primary_ports[@]}"; do
    shards+=" $port: $(( $(spublish_calls "$port") - ${before[$port]:-0} )) SPUBLISH;"
  done
  echo "round $round ($first first): one Redis $(figure "$out/single-$round.json" delivered_per_s) msg/s" \
    "(Redis $(cpu_us "$single_cpu" "$out/single-$round.json"), replica $(cpu_us "$single_replica_cpu" "$out/single-$round.json") us/msg);" \
    "cluster $(figure "$out/cluster-$round.json" delivered_per_s) msg/s" \
    "(primaries $(cpu_us "$primaries_cpu" "$out/cluster-$round.json")," \
    "replicas $(cpu_us "$replicas_cpu" "$out/cluster-$round.json") us/msg);" \
    "reads per 1,000 msg: one $(per_k "$single_reads" "$out/single-$round.json")," \
    "primaries $(per_k "$primaries_reads" "$out/cluster-$round.json");" \
    "cluster/one $(python3 -c "print(round($(figure "$out/cluster-$round.json" delivered_per_s) / $(figure "$out/single-$round.json" delivered_per_s), 2))");" \
    "per primary:${shards%;}"
done
fi

if [[ ${ONLY:-postgres} == postgres ]]; then
echo "== PostgreSQL: REST on one node, reads from two standbys against none, $concurrency clients, ${duration} s a phase"
start_postgres
primary="postgres://postgres@127.0.0.1:${pg_ports[0]}"
standbys="postgres://postgres@127.0.0.1:${pg_ports[1]}/chat_loadtest,postgres://postgres@127.0.0.1:${pg_ports[2]}/chat_loadtest"
for round in $(seq "$rounds"); do
  PG=$primary scripts/loadtest.sh rest --concurrency "$concurrency" --duration "$duration" \
    --json "$out/primary-$round.json" > "$out/primary-$round.log"
  PG=$primary DATABASE_READ_URLS=$standbys scripts/loadtest.sh rest --concurrency "$concurrency" \
    --duration "$duration" --json "$out/standbys-$round.json" > "$out/standbys-$round.log"
  echo "round $round: reads/s primary only $(figure "$out/primary-$round.json" reads_per_s)," \
    "two standbys $(figure "$out/standbys-$round.json" reads_per_s);" \
    "sends/s $(figure "$out/primary-$round.json" sends_per_s) / $(figure "$out/standbys-$round.json" sends_per_s)"
done
fi
echo "Reports in $out"
