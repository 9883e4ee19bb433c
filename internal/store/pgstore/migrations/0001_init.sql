-- A job is its JSON document (job.Job) in doc, with the fields that lists
-- filter on copied into columns. Its Parameters are kept apart, in params
-- (json, not jsonb), so that they read back as written: jsonb reorders keys.
CREATE TABLE jobs (
	seq       bigserial PRIMARY KEY,
	id        text NOT NULL CONSTRAINT jobs_id UNIQUE,
	owner     text NOT NULL,
	state     text NOT NULL,
	template  text NOT NULL,
	parent_id text NOT NULL DEFAULT '',
	idem_key  text,
	doc       jsonb NOT NULL,
	params    json
);
CREATE INDEX jobs_owner ON jobs (owner, seq);
CREATE INDEX jobs_state ON jobs (state, seq);
CREATE INDEX jobs_parent ON jobs (parent_id, seq) WHERE parent_id <> '';
CREATE UNIQUE INDEX jobs_idem ON jobs (owner, idem_key) WHERE idem_key IS NOT NULL;

CREATE TABLE events (
	job_id text NOT NULL,
	seq    integer NOT NULL,
	time   timestamptz NOT NULL,
	state  text NOT NULL,
	reason text NOT NULL DEFAULT '',
	PRIMARY KEY (job_id, seq)
);

-- A log stream is chunks that follow one another: off is where a chunk
-- starts, and the next one starts where it ends.
CREATE TABLE logs (
	job_id text NOT NULL,
	stream text NOT NULL,
	off    bigint NOT NULL,
	data   bytea NOT NULL,
	PRIMARY KEY (job_id, stream, off)
);

CREATE TABLE tokens (
	id         text PRIMARY KEY,
	hash       text NOT NULL CONSTRAINT tokens_hash UNIQUE,
	username   text NOT NULL,
	name       text NOT NULL DEFAULT '',
	scopes     text[] NOT NULL,
	job_id     text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL,
	expires_at timestamptz -- NULL: never
);
CREATE INDEX tokens_user ON tokens (username, created_at);
CREATE INDEX tokens_job ON tokens (job_id) WHERE job_id <> '';
