-- Schema version 5: users an admin disabled (or enabled again). A user
-- without a row is enabled.
CREATE TABLE users (
	name        TEXT PRIMARY KEY,
	disabled    INTEGER NOT NULL DEFAULT 0,
	disabled_at INTEGER NOT NULL DEFAULT 0 -- Unix ns; 0 if never
) WITHOUT ROWID;
