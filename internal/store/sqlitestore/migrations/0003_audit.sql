-- The audit log: one row per request that changes something (or tried
-- to), newest last. Never a token's secret: its id only.
CREATE TABLE audit (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	time       INTEGER NOT NULL, -- Unix ns
	user       TEXT NOT NULL DEFAULT '',
	token_id   TEXT NOT NULL DEFAULT '',
	job_id     TEXT NOT NULL DEFAULT '',
	action     TEXT NOT NULL,
	outcome    INTEGER NOT NULL,
	client     TEXT NOT NULL DEFAULT '',
	request_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_user ON audit (user, seq);
CREATE INDEX audit_job ON audit (job_id, seq) WHERE job_id <> '';
CREATE INDEX audit_action ON audit (action, seq);
