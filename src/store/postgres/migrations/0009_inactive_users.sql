-- Every node reads the inactive users every INACTIVE_USERS_POLL_SECS: a small
-- index of just them, however many active users there are.
CREATE INDEX users_inactive ON users (id) WHERE NOT is_active;
