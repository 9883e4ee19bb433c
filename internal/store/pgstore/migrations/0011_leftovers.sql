-- Schema version 11: jobs removed (deleted, purged) whose objects may
-- still be in the bucket: an output's presigned URL handed out before the
-- job went works until it expires, and a crash can come between the job's
-- row and its objects. A sweep deletes what is left once the URLs have
-- expired, then the job's row here.
CREATE TABLE leftovers (
	job_id  text PRIMARY KEY,
	owner   text NOT NULL,
	removed timestamptz NOT NULL
);
CREATE INDEX leftovers_removed ON leftovers (removed, job_id);
