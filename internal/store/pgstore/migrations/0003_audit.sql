-- The audit log: one row per request that changes something (or tried
-- to), newest last. Never a token's secret: its id only.
CREATE TABLE audit (
	seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time       timestamptz NOT NULL,
	username   text NOT NULL DEFAULT '',
	token_id   text NOT NULL DEFAULT '',
	job_id     text NOT NULL DEFAULT '',
	action     text NOT NULL,
	outcome    integer NOT NULL,
	client     text NOT NULL DEFAULT '',
	request_id text NOT NULL DEFAULT ''
);
CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_user ON audit (username, seq);
CREATE INDEX audit_job ON audit (job_id, seq) WHERE job_id <> '';
CREATE INDEX audit_action ON audit (action, seq);
