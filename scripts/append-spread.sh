#!/usr/bin/env bash
# What a batch's spread over chats costs PostgreSQL: times the server's own
# append statement (APPEND_NEW_MESSAGES, read from src/store/postgres/append.rs)
# for one batch of MESSAGES (330) messages spread over as many chats (one each,
# as in `loadtest inbox`) against the same number over CHATS_DENSE (22) chats (15
# each, as in `loadtest chat`), and the chats UPDATE alone. Each execution is its
# own transaction, rolled back, so the database is left as it was; the first
# five of each (PostgreSQL's custom plans) are left out, then the median of
# ROUNDS (7) is printed. Needs a migrated database with at least MESSAGES chats,
# such as the one `scripts/loadtest.sh inbox` leaves behind:
#   scripts/loadtest.sh inbox --duration 3 && scripts/append-spread.sh
# DATABASE (default postgres://postgres@127.0.0.1:5432/chat_loadtest).
set -euo pipefail
cd "$(dirname "$0")/.."
db=${DATABASE:-postgres://postgres@127.0.0.1:5432/chat_loadtest}
messages=${MESSAGES:-330} dense=${CHATS_DENSE:-22} rounds=${ROUNDS:-7}
statement=$(python3 -c '
import re
source = open("src/store/postgres/append.rs").read()
print(re.search(r"APPEND_NEW_MESSAGES: &str = \"(.*?)\";", source, re.S).group(1))')
update=${statement%%RETURNING c.id AS chat*}
update="${update#*moved AS (} RETURNING c.id"

# batch K: psql variables for a batch of $messages messages over K chats, each
# message sent by its chat's lower user (one sender per chat: `lows` are the
# senders in chat order and `counts` the place of each one's last message).
# Client ids are drawn afresh for each execution.
batch() {
  local k=$1 per=$(( messages / $1 ))
  cat <<SQL
SELECT array_agg(id ORDER BY id)::text AS ids, array_agg(user_low ORDER BY id)::text AS lows
FROM (SELECT id, user_low FROM chats ORDER BY random() LIMIT $k) x \gset
SELECT array_agg(c ORDER BY o, g)::text AS chats, array_agg(u ORDER BY o, g)::text AS senders,
       array_agg(g ORDER BY o, g)::text AS nth,
       array_agg('load test message'::text)::text AS contents, array_agg('{}'::text)::text AS metas
FROM unnest(:'ids'::bigint[], :'lows'::bigint[]) WITH ORDINALITY AS x(c, u, o),
     generate_series(1, $per) g \gset
SELECT array_fill($per::bigint, ARRAY[$k])::text AS counts, array_fill(0::bigint, ARRAY[$k])::text AS zeros \gset
SQL
}

# timed LABEL K: the append and the UPDATE alone, each 5 + $rounds times.
timed() {
  local label=$1 k=$2
  batch "$k"
  echo "\\o /dev/null"
  for kind in app up; do
    for _ in $(seq $(( 5 + rounds ))); do
      echo "SELECT md5(random()::text) AS r \\gset"
      echo "SELECT (SELECT array_agg(:'r' || g) FROM generate_series(1, $messages) g)::text AS cmids \\gset"
      echo "BEGIN;"
      echo "\\timing on"
      echo "EXECUTE $kind(:'chats', :'senders', :'contents', :'metas', :'cmids', :'ids', :'counts', :'nth', :'lows', :'counts', :'zeros', :'zeros');"
      echo "\\timing off"
      echo "ROLLBACK;"
      echo "\\echo $label $kind"
    done
  done
  echo "\\o"
}

{
  types="bigint[],bigint[],text[],text[],text[],bigint[],bigint[],bigint[],bigint[],bigint[],bigint[],bigint[]"
  echo "PREPARE app($types) AS $statement;"
  # The UPDATE alone takes the same parameters (it reads $6, $7 and $9..$12).
  echo "PREPARE up($types) AS $update;"
  timed spread "$messages"
  timed dense "$dense"
} | psql "$db" -q -v ON_ERROR_STOP=1 -f - 2>&1 | python3 -c '
import re, statistics, sys
messages = int(sys.argv[1])
times, pending = {}, None
for line in sys.stdin:
    m = re.match(r"Time: ([0-9.]+) ms", line)
    if m:
        pending = float(m.group(1))
    elif pending is not None and re.match(r"^(spread|dense) (app|up)$", line.strip()):
        times.setdefault(line.strip(), []).append(pending)
        pending = None
    elif line.startswith("psql") or "ERROR" in line:
        sys.exit(line.strip())
names = {"app": "append", "up": "update"}
for key, values in times.items():
    kept = values[5:]
    median = statistics.median(kept)
    batch, kind = key.split()
    print(f"{batch:6} {names[kind]:6} median {median:6.2f} ms  ({median * 1000 / messages:5.1f} us per message; {len(kept)} runs)")
' "$messages"
