-- Schema version 8: the files a GA4GH TES task's outputs delivered, a row
-- each, numbered in the order first delivered: they were a list in the
-- job's row, which every delivery rewrote whole (the total written grew
-- with the square of the files). The number of a job's last row is how
-- many it has.
CREATE TABLE delivered (
	job_id text NOT NULL,
	file   text NOT NULL, -- the owner's file it became
	seq    integer NOT NULL,
	path   text NOT NULL, -- where it was in the container
	size   bigint NOT NULL,
	PRIMARY KEY (job_id, file)
);
CREATE UNIQUE INDEX delivered_seq ON delivered (job_id, seq);
