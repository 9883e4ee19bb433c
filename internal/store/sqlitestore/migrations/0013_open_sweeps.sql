-- Schema version 13: the jobs of a sweep not finished, so that the purge
-- finds at once whether a finished job's sweep has any (a sweep goes
-- whole: a job waiting for it counts its jobs against its size).
CREATE INDEX jobs_sweep_open ON jobs (sweep_id) WHERE sweep_id IS NOT NULL AND finished_at IS NULL;
