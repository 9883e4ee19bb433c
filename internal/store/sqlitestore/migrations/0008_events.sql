-- A job's events keyed by (job_id, seq) alone, without a rowid: one
-- B-tree per insert instead of two (the table and its primary key's
-- index), so that each group commit writes a page less.
CREATE TABLE events_by_job (
	job_id TEXT NOT NULL,
	seq    INTEGER NOT NULL,
	time   INTEGER NOT NULL,
	state  TEXT NOT NULL,
	reason TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
INSERT INTO events_by_job (job_id, seq, time, state, reason)
	SELECT job_id, seq, time, state, reason FROM events;
DROP TABLE events;
ALTER TABLE events_by_job RENAME TO events;
