-- User search matches substrings of email, full name and nickname (ILIKE
-- '%q%'), or for a query shorter than a trigram their words' starts
-- ('q%'). Without an index each search read the whole users table; pg_trgm's
-- GIN indexes serve both forms (a trusted extension since PostgreSQL 13: the
-- database owner may create it). The search runs as a one-shot statement, so
-- each is planned for its own pattern: a generic plan cannot tell a rare
-- substring (index) from a common prefix (walk ids, stop at the limit).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS users_email_trgm ON users USING gin (email gin_trgm_ops);
-- The search compares full_name and nickname as text (they are varchar): the
-- indexed expressions must say so, or the planner cannot match them.
CREATE INDEX IF NOT EXISTS users_full_name_trgm ON users USING gin ((full_name::text) gin_trgm_ops);
CREATE INDEX IF NOT EXISTS users_nickname_trgm ON users USING gin ((coalesce(nickname, '')::text) gin_trgm_ops);
