-- The jobs an engine has and that have not ended (a backend id, a state
-- that is not terminal) are marked, in a partial index of their own, so
-- that the dispatcher's poll reads only them, not the jobs held at
-- creation or ended beside them, however many.
ALTER TABLE jobs ADD COLUMN in_engine INTEGER; -- 1, or NULL
UPDATE jobs SET in_engine = 1
	WHERE state NOT IN ('succeeded', 'failed', 'canceled')
	AND coalesce(json_extract(doc, '$.backend_id'), json_extract(doc, '$.BackendID'), '') <> '';
CREATE INDEX jobs_in_engine ON jobs (seq) WHERE in_engine IS NOT NULL;
