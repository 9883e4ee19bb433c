-- Schema version 2: jobs are stored as storedriver.JobRow (explicit,
-- versioned JSON names; rows of version 1 are read as they are and
-- rewritten when they next change), with the columns and indexes that make
-- every filtered page of the API an index range scan.
ALTER TABLE jobs ADD COLUMN sweep_id TEXT;
-- When a job in a terminal state finished (Unix ns); NULL while it runs.
ALTER TABLE jobs ADD COLUMN finished_at INTEGER;
UPDATE jobs SET finished_at = coalesce(
	CAST(unixepoch(nullif(json_extract(doc, '$.FinishedAt'), '0001-01-01T00:00:00Z'), 'subsec') * 1000000000 AS INTEGER),
	CAST(unixepoch(json_extract(doc, '$.CreatedAt'), 'subsec') * 1000000000 AS INTEGER), 0)
	WHERE state IN ('succeeded', 'failed', 'canceled');

CREATE INDEX jobs_owner_state ON jobs (owner, state, seq);
CREATE INDEX jobs_owner_template ON jobs (owner, template, seq);
CREATE INDEX jobs_sweep ON jobs (sweep_id, seq) WHERE sweep_id IS NOT NULL;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- A job's labels, one row each, for label filters.
CREATE TABLE job_labels (
	seq   INTEGER NOT NULL, -- the job's
	owner TEXT NOT NULL,    -- the job's
	key   TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (seq, key)
) WITHOUT ROWID;
CREATE INDEX job_labels_owner ON job_labels (owner, key, value, seq);
CREATE INDEX job_labels_kv ON job_labels (key, value, seq);
INSERT INTO job_labels (seq, owner, key, value)
	SELECT j.seq, j.owner, l.key, l.value FROM jobs j, json_each(j.doc, '$.Labels') l
	WHERE json_type(j.doc, '$.Labels') = 'object';
