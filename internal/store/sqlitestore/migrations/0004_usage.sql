-- Schema version 4: each user's use, per project ('' for jobs that name
-- none; that row also holds the user's stored bytes), kept in the same
-- transactions as the changes it counts, so that quotas are read from a
-- few rows. Jobs stored before it are counted here; their core-seconds
-- and the bytes stored before it are not.
CREATE TABLE user_usage (
	owner        TEXT NOT NULL,
	project      TEXT NOT NULL,
	active_jobs  INTEGER NOT NULL DEFAULT 0, -- jobs not yet finished
	active_cores INTEGER NOT NULL DEFAULT 0, -- their cores
	jobs         INTEGER NOT NULL DEFAULT 0, -- jobs created
	core_seconds REAL NOT NULL DEFAULT 0,    -- of the jobs that ended
	bytes        INTEGER NOT NULL DEFAULT 0, -- files and outputs stored
	PRIMARY KEY (owner, project)
) WITHOUT ROWID;
INSERT INTO user_usage (owner, project, active_jobs, active_cores, jobs)
	SELECT owner, coalesce(json_extract(doc, '$.project'), ''),
		sum(state NOT IN ('succeeded', 'failed', 'canceled')),
		sum(CASE WHEN state IN ('succeeded', 'failed', 'canceled') THEN 0 ELSE
			max(1, coalesce(json_extract(doc, '$.resources.nodes'), json_extract(doc, '$.Resources.Nodes'), 1)) *
			max(1, coalesce(json_extract(doc, '$.resources.cores_per_node'), json_extract(doc, '$.Resources.CoresPerNode'), 1)) END),
		count(*)
	FROM jobs GROUP BY 1, 2;
