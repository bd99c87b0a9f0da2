#!/usr/bin/env bash
# The import figure of BENCHMARKS.md: a Django backend's database with
# USERS users, CHATS chats (pairs of users) and MESSAGES_PER_CHAT messages in
# each (defaults: 20,000, 10,000 and 100, so 1,000,000 messages), made with
# Django's own migrations (tests/django) and filled by SQL, then imported
# RUNS times (default 3), each into a fresh PostgreSQL database, by the
# release binary; then a second import after 1,000 more messages, and a
# third with nothing new, as in the cut-over. Prints each run's wall time
# and summary.
#
#   scripts/django-import-bench.sh
#   PG=postgres://postgres@127.0.0.1:5432 SERVER_BIN=target/release/chat-server scripts/django-import-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG:-postgres://postgres@127.0.0.1:5432}
SERVER_BIN=${SERVER_BIN:-target/release/chat-server}
USERS=${USERS:-20000}
CHATS=${CHATS:-10000}
MESSAGES_PER_CHAT=${MESSAGES_PER_CHAT:-100}
RUNS=${RUNS:-3}
SOURCE_DB=chat_bench_django_source
[[ -x $SERVER_BIN ]] || cargo build --release -q -p chat-server
PYTHON=$(scripts/django-env.sh)
SCRATCH=$(mktemp -d /tmp/django-bench.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT

sql() { psql "$PG/$1" -v ON_ERROR_STOP=1 -qAt "${@:2}"; }
sql postgres -c "DROP DATABASE IF EXISTS $SOURCE_DB" -c "CREATE DATABASE $SOURCE_DB"
cp -r tests/django "$SCRATCH/project"
host=$(python3 -c 'import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or 5432, p.username or "postgres")' "$PG")
read -r DJANGO_DB_HOST DJANGO_DB_PORT DJANGO_DB_USER <<<"$host"
export DJANGO_DB_HOST DJANGO_DB_PORT DJANGO_DB_USER DJANGO_DB_NAME=$SOURCE_DB DJANGO_SECRET_KEY=bench
(cd "$SCRATCH/project" && "$PYTHON" manage.py makemigrations users chat -v0 && "$PYTHON" manage.py migrate -v0)

echo "filling: $USERS users, $CHATS chats, $((CHATS * MESSAGES_PER_CHAT)) messages"
sql "$SOURCE_DB" <<SQL
INSERT INTO users_user (password, is_superuser, email, full_name, nickname, role, other_info,
                        is_active, is_staff, date_joined)
SELECT 'pbkdf2_sha256\$1000000\$benchsalt\$' || md5(g::text), false, 'user' || g || '@example.com',
       'User ' || g, '', 'user', '{}', true, false, now()
FROM generate_series(1, $USERS) g;
INSERT INTO chat_chat (pair_key, created_at, updated_at)
SELECT encode(sha256(convert_to('pair:' || (2 * g - 1) || ':' || (2 * g), 'UTF8')), 'hex'), now(), now()
FROM generate_series(1, $CHATS) g;
INSERT INTO chat_chat_participants (chat_id, user_id)
SELECT g, 2 * g - 1 FROM generate_series(1, $CHATS) g
UNION ALL SELECT g, 2 * g FROM generate_series(1, $CHATS) g;
INSERT INTO chat_message (chat_id, sender_id, content, metadata, created_at)
SELECT c, 2 * c - (m % 2), 'message ' || m || ' of chat ' || c || ', of an ordinary length',
       jsonb_build_object('n', m), now() - interval '1 day' + m * interval '1 second'
FROM generate_series(1, $CHATS) c, generate_series(1, $MESSAGES_PER_CHAT) m;
ANALYZE;
SQL

import_once() { # label
  local start end
  start=$(date +%s.%N)
  DATABASE_URL="$PG/chat_bench_django_target" SECRET_KEY=bench RUST_LOG=warn \
    "$SERVER_BIN" import-django --source "$PG/$SOURCE_DB" 2>/dev/null > "$SCRATCH/summary"
  end=$(date +%s.%N)
  printf '%s: %.1f s wall\n' "$1" "$(echo "$end - $start" | bc)"
  sed 's/^/    /' "$SCRATCH/summary"
}

for run in $(seq "$RUNS"); do
  sql postgres -c "DROP DATABASE IF EXISTS chat_bench_django_target"
  import_once "first import, run $run"
done
# The cut-over's second import (after the freeze): 1,000 new messages in 100 chats.
sql "$SOURCE_DB" -c "INSERT INTO chat_message (chat_id, sender_id, content, metadata, created_at)
  SELECT c, 2 * c, 'after the first import ' || m, '{}', now() + m * interval '1 ms'
  FROM generate_series(1, 100) c, generate_series(1, 10) m"
import_once "second import (1,000 new messages in 100 chats)"
import_once "third import (nothing new)"
sql postgres -c "DROP DATABASE IF EXISTS chat_bench_django_target" -c "DROP DATABASE IF EXISTS $SOURCE_DB"
