-- Schema version 4: each user's use, per project ('' for jobs that name
-- none; that row also holds the user's stored bytes), kept in the same
-- transactions as the changes it counts, so that quotas are read from a
-- few rows. Jobs stored before it are counted here; their core-seconds
-- and the bytes stored before it are not.
CREATE TABLE user_usage (
	owner        text NOT NULL,
	project      text NOT NULL,
	active_jobs  bigint NOT NULL DEFAULT 0,
	active_cores bigint NOT NULL DEFAULT 0,
	jobs         bigint NOT NULL DEFAULT 0,
	core_seconds double precision NOT NULL DEFAULT 0,
	bytes        bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (owner, project)
);
INSERT INTO user_usage (owner, project, active_jobs, active_cores, jobs)
	SELECT owner, coalesce(doc->>'project', ''),
		count(*) FILTER (WHERE state NOT IN ('succeeded', 'failed', 'canceled')),
		coalesce(sum(greatest(1, coalesce((doc->'resources'->>'nodes')::bigint, (doc->'Resources'->>'Nodes')::bigint, 1)) *
			greatest(1, coalesce((doc->'resources'->>'cores_per_node')::bigint, (doc->'Resources'->>'CoresPerNode')::bigint, 1)))
			FILTER (WHERE state NOT IN ('succeeded', 'failed', 'canceled')), 0),
		count(*)
	FROM jobs GROUP BY 1, 2;
