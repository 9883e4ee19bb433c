-- The jobs an engine has and that have not ended (a backend id, a state
-- that is not terminal) are marked, in a partial index of their own, so
-- that the dispatcher's poll reads only them, not the jobs held at
-- creation or ended beside them, however many.
ALTER TABLE jobs ADD COLUMN in_engine boolean; -- true, or NULL
UPDATE jobs SET in_engine = true
	WHERE state NOT IN ('succeeded', 'failed', 'canceled')
	AND coalesce(doc->>'backend_id', doc->>'BackendID', '') <> '';
CREATE INDEX jobs_in_engine ON jobs (seq) WHERE in_engine;
