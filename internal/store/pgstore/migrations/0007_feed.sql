-- Schema version 7: the events feed and webhook deliveries.
-- Each owner's job state changes, numbered per owner in the order they
-- commit: the owner's row in change_heads is locked from the change to
-- the commit, so that GET /v1/events resumes after a number and misses
-- nothing (a sequence's numbers may commit out of order).
CREATE TABLE change_heads (
	owner text PRIMARY KEY,
	seq   bigint NOT NULL
);
CREATE TABLE changes (
	owner    text NOT NULL,
	seq      bigint NOT NULL,
	job_id   text NOT NULL,
	sweep_id text NOT NULL DEFAULT '',
	time     timestamptz NOT NULL,
	state    text NOT NULL,
	reason   text NOT NULL DEFAULT '',
	PRIMARY KEY (owner, seq)
);
CREATE INDEX changes_time ON changes (time);
-- Webhook events not yet delivered: an outbox, written with the change.
CREATE TABLE deliveries (
	id       bigserial PRIMARY KEY,
	owner    text NOT NULL,
	seq      bigint NOT NULL, -- the change's
	job_id   text NOT NULL,
	sweep_id text NOT NULL DEFAULT '',
	time     timestamptz NOT NULL,
	state    text NOT NULL,
	reason   text NOT NULL DEFAULT '',
	url      text NOT NULL,
	attempts integer NOT NULL DEFAULT 0,
	next_at  timestamptz NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_at, id);
ALTER TABLE users ADD COLUMN webhook_secret text NOT NULL DEFAULT '';
