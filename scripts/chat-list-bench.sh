#!/usr/bin/env bash
# The chat list of a user with 10,000 chats (and of one with 20 on the same
# database), timed over HTTP: a fresh database (chat_biglist), the release
# server on port 18666, 10,000 users each in a chat with the first user and one
# message in every chat, then 21 GETs of each list; prints the median.
# STORE=sqlite does the same on the embedded store (a fresh DATA_DIR, the rows
# written with the sqlite3 shell). SERVER_BIN runs another build.
# Example: cargo build --release -p chat-server && scripts/chat-list-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export SECRET_KEY=loadtest-secret-0123456789abcdef0123456789 RATE_LIMIT_SENDS_PER_SEC=0 RATE_LIMIT_AUTH_PER_MIN=0
export RATE_LIMIT_NEW_CHATS_PER_MIN=0
if [[ ${STORE:-postgres} == sqlite ]]; then
  export DATA_DIR; DATA_DIR=$(mktemp -d /tmp/chat-biglist.XXXXXX)
  unset DATABASE_URL
else
  psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS chat_biglist" >/dev/null 2>&1
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/chat_biglist
fi
BIND=127.0.0.1:18666 RUST_LOG=warn ${SERVER_BIN:-target/release/chat-server} > /tmp/biglist-server.log 2>&1 &
pid=$!
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18666/healthz && break; sleep 0.1; done
for n in big small; do
  curl -s -X POST http://127.0.0.1:18666/auth/register/ -H 'Content-Type: application/json' \
    -d "{\"email\":\"$n@example.com\",\"password\":\"correct horse\",\"full_name\":\"$n\"}" >/dev/null
done
if [[ ${STORE:-postgres} == sqlite ]]; then
  sqlite3 "$DATA_DIR/chat.sqlite3" <<'SQL'
.timeout 5000
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 10000)
INSERT INTO users (email, password_hash, full_name, date_joined) SELECT 'u' || n || '@x.test', 'x', 'U ' || n, 0 FROM g;
INSERT INTO chats (pair_key, user_low, user_high, created_at)
SELECT 'pair:' || min(me.id, o.id) || ':' || max(me.id, o.id), min(me.id, o.id), max(me.id, o.id), 0
FROM users me, users o WHERE me.email = 'big@example.com' AND o.email LIKE 'u%@x.test';
INSERT INTO chats (pair_key, user_low, user_high, created_at)
SELECT 'pair:' || min(me.id, o.id) || ':' || max(me.id, o.id), min(me.id, o.id), max(me.id, o.id), 0
FROM users me, (SELECT id FROM users WHERE email LIKE 'u%@x.test' ORDER BY id LIMIT 20) o
WHERE me.email = 'small@example.com';
INSERT INTO messages (chat_id, seq, sender_id, content, metadata, created_at)
SELECT id, 1, user_high, 'hello', '{}', 0 FROM chats;
UPDATE chats SET last_seq = 1;
ANALYZE;
SQL
else
psql $DATABASE_URL -q <<'SQL'
INSERT INTO users (email, password_hash, full_name) SELECT 'u' || g || '@x.test', 'x', 'U ' || g FROM generate_series(1, 10000) g;
WITH me AS (SELECT id FROM users WHERE email = 'big@example.com'),
     others AS (SELECT id FROM users WHERE email LIKE 'u%@x.test')
INSERT INTO chats (pair_key, user_low, user_high)
SELECT encode(sha256(convert_to('pair:' || least(me.id, others.id) || ':' || greatest(me.id, others.id), 'UTF8')), 'hex'),
       least(me.id, others.id), greatest(me.id, others.id) FROM me, others;
WITH me AS (SELECT id FROM users WHERE email = 'small@example.com'),
     others AS (SELECT id FROM users WHERE email LIKE 'u%@x.test' ORDER BY id LIMIT 20)
INSERT INTO chats (pair_key, user_low, user_high)
SELECT encode(sha256(convert_to('pair:' || least(me.id, others.id) || ':' || greatest(me.id, others.id), 'UTF8')), 'hex'),
       least(me.id, others.id), greatest(me.id, others.id) FROM me, others;
-- one message in every chat, so each list row carries a last message
INSERT INTO messages (chat_id, seq, sender_id, content, metadata, created_at)
SELECT id, 1, user_high, 'hello', '{}', now() FROM chats;
UPDATE chats SET last_seq = 1;
ANALYZE;
SQL
fi
for n in big small; do
  token=$(curl -s -X POST http://127.0.0.1:18666/auth/login/ -H 'Content-Type: application/json' \
    -d "{\"email\":\"$n@example.com\",\"password\":\"correct horse\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access"])')
  curl -s -o /dev/null http://127.0.0.1:18666/api/chat/chats/ -H "Authorization: Bearer $token"
  times=$(for i in $(seq 21); do curl -s -o /tmp/biglist-$n.json -w '%{time_total}\n' http://127.0.0.1:18666/api/chat/chats/ -H "Authorization: Bearer $token"; done | sort -n)
  median=$(echo "$times" | sed -n 11p)
  count=$(python3 -c "import json; print(len(json.load(open('/tmp/biglist-$n.json'))))")
  bytes=$(stat -c %s /tmp/biglist-$n.json)
  echo "$n: $count chats, $bytes bytes, median of 21: ${median}s"
done
kill $pid; wait $pid 2>/dev/null || true
[[ ${STORE:-postgres} == sqlite ]] && rm -rf "$DATA_DIR"
true
