-- Schema version 7: the events feed and webhook deliveries.
-- Each owner's job state changes, numbered per owner in the order they
-- commit (writes are serialised), so that GET /v1/events resumes after a
-- number and misses nothing; change_heads holds each owner's last number.
CREATE TABLE change_heads (
	owner TEXT PRIMARY KEY,
	seq   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE changes (
	owner    TEXT NOT NULL,
	seq      INTEGER NOT NULL,
	job_id   TEXT NOT NULL,
	sweep_id TEXT NOT NULL DEFAULT '',
	time     INTEGER NOT NULL, -- Unix ns
	state    TEXT NOT NULL,
	reason   TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (owner, seq)
) WITHOUT ROWID;
CREATE INDEX changes_time ON changes (time);
-- Webhook events not yet delivered: an outbox, written with the change.
CREATE TABLE deliveries (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	owner    TEXT NOT NULL,
	seq      INTEGER NOT NULL, -- the change's
	job_id   TEXT NOT NULL,
	sweep_id TEXT NOT NULL DEFAULT '',
	time     INTEGER NOT NULL,
	state    TEXT NOT NULL,
	reason   TEXT NOT NULL DEFAULT '',
	url      TEXT NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_at  INTEGER NOT NULL -- Unix ns
);
CREATE INDEX deliveries_due ON deliveries (next_at, id);
ALTER TABLE users ADD COLUMN webhook_secret TEXT NOT NULL DEFAULT '';
