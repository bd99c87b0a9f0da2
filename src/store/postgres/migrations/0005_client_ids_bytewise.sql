-- client_msg_id compares bytewise (COLLATE "C"): an id is an opaque token, and
-- the database's default collation made every comparison in its unique index
-- (probed or checked on every append) a strcoll call. Rebuilds that index; the
-- table is not rewritten.
ALTER TABLE messages ALTER COLUMN client_msg_id TYPE TEXT COLLATE "C";
