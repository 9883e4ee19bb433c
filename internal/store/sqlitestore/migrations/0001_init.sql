CREATE TABLE jobs (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	id         TEXT NOT NULL UNIQUE,
	owner      TEXT NOT NULL,
	state      TEXT NOT NULL,
	template   TEXT NOT NULL,
	parent_id  TEXT NOT NULL DEFAULT '',
	idem_key   TEXT,
	doc        TEXT NOT NULL
);
CREATE INDEX jobs_owner ON jobs (owner, seq);
CREATE INDEX jobs_state ON jobs (state, seq);
CREATE INDEX jobs_parent ON jobs (parent_id, seq) WHERE parent_id <> '';
CREATE UNIQUE INDEX jobs_idem ON jobs (owner, idem_key) WHERE idem_key IS NOT NULL;

CREATE TABLE events (
	job_id TEXT NOT NULL,
	seq    INTEGER NOT NULL,
	time   INTEGER NOT NULL,
	state  TEXT NOT NULL,
	reason TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (job_id, seq)
);

CREATE TABLE logs (
	job_id TEXT NOT NULL,
	stream TEXT NOT NULL,
	off    INTEGER NOT NULL,
	data   BLOB NOT NULL,
	PRIMARY KEY (job_id, stream, off)
);

CREATE TABLE tokens (
	id         TEXT PRIMARY KEY,
	hash       TEXT NOT NULL UNIQUE,
	user       TEXT NOT NULL,
	name       TEXT NOT NULL DEFAULT '',
	scopes     TEXT NOT NULL,
	job_id     TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_user ON tokens (user);
CREATE INDEX tokens_job ON tokens (job_id) WHERE job_id <> '';
