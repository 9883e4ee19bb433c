-- Schema version 13: what replicas share while uploads run: whose turn a
-- path is, and the room uploads hold in their users' quotas (see
-- store.Leases). Unlogged: nothing here needs to outlive a crash of the
-- database, and a write of it costs no WAL.
CREATE UNLOGGED TABLE key_leases (
	key text PRIMARY KEY,
	holder text NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX key_leases_expires ON key_leases (expires_at);
CREATE UNLOGGED TABLE holds (
	id text PRIMARY KEY,
	owner text NOT NULL,
	bytes bigint NOT NULL,
	files bigint NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX holds_owner ON holds (owner);
