-- Schema version 5: users an admin disabled (or enabled again). A user
-- without a row is enabled.
CREATE TABLE users (
	name        text PRIMARY KEY,
	disabled    boolean NOT NULL DEFAULT false,
	disabled_at timestamptz
);
