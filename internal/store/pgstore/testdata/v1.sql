-- Written by pgstore at commit 7f0686e (schema version 1) with storetest.WriteFixture,
-- dumped with pg_dump --inserts; the schema prefix removed.
SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;
SET default_tablespace = '';
SET default_table_access_method = heap;
CREATE TABLE events (
    job_id text NOT NULL,
    seq integer NOT NULL,
    "time" timestamp with time zone NOT NULL,
    state text NOT NULL,
    reason text DEFAULT ''::text NOT NULL
);
CREATE TABLE jobs (
    seq bigint NOT NULL,
    id text NOT NULL,
    owner text NOT NULL,
    state text NOT NULL,
    template text NOT NULL,
    parent_id text DEFAULT ''::text NOT NULL,
    idem_key text,
    doc jsonb NOT NULL,
    params json
);
CREATE SEQUENCE jobs_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE jobs_seq_seq OWNED BY jobs.seq;
CREATE TABLE logs (
    job_id text NOT NULL,
    stream text NOT NULL,
    off bigint NOT NULL,
    data bytea NOT NULL
);
CREATE TABLE schema_version (
    version integer NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE tokens (
    id text NOT NULL,
    hash text NOT NULL,
    username text NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    scopes text[] NOT NULL,
    job_id text DEFAULT ''::text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    expires_at timestamp with time zone
);
ALTER TABLE ONLY jobs ALTER COLUMN seq SET DEFAULT nextval('jobs_seq_seq'::regclass);
INSERT INTO events VALUES ('fixa', 1, '2025-03-04 05:06:07.123456+00', 'pending', 'created');
INSERT INTO events VALUES ('fixb', 1, '2025-03-04 05:06:08.123456+00', 'held', 'held by user');
INSERT INTO events VALUES ('fixc', 1, '2025-03-04 05:06:09.123456+00', 'pending', 'created');
INSERT INTO events VALUES ('fixa', 2, '2026-11-25 19:46:07.700271+00', 'queued', 'to queued');
INSERT INTO events VALUES ('fixa', 3, '2026-11-25 19:46:07.701129+00', 'running', 'to running');
INSERT INTO events VALUES ('fixa', 4, '2026-11-25 19:46:07.70191+00', 'finishing', 'to finishing');
INSERT INTO events VALUES ('fixa', 5, '2026-11-25 19:46:07.702716+00', 'succeeded', 'to succeeded');
INSERT INTO jobs VALUES (2, 'fixb', 'alice', 'held', 'wordcount', 'fixa', NULL, '{"ID": "fixb", "Name": "child", "Depth": 1, "Error": "", "Owner": "alice", "State": "held", "Usage": null, "Inputs": null, "Labels": {"sweep": "b"}, "Reason": "held by user", "IdemKey": "", "ExitCode": null, "IdemHash": "", "ParentID": "fixa", "Template": "wordcount", "BackendID": "", "ClaimedBy": "", "CreatedAt": "2025-03-04T05:06:08.123456Z", "Resources": {"Nodes": 0, "MemoryMB": 0, "WalltimeS": 0, "CoresPerNode": 0}, "Scheduler": "local", "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z", "InputSizes": null, "Parameters": null, "Environment": "local", "Submissions": 0, "TemplateDoc": null, "ClaimedUntil": "0001-01-01T00:00:00Z", "TemplateVersion": 1}', '{"n":2}');
INSERT INTO jobs VALUES (3, 'fixc', 'bob', 'pending', 'hello', '', NULL, '{"ID": "fixc", "Name": "bobs", "Depth": 0, "Error": "", "Owner": "bob", "State": "pending", "Usage": null, "Inputs": null, "Labels": null, "Reason": "created", "IdemKey": "", "ExitCode": null, "IdemHash": "", "ParentID": "", "Template": "hello", "BackendID": "", "ClaimedBy": "", "CreatedAt": "2025-03-04T05:06:09.123456Z", "Resources": {"Nodes": 0, "MemoryMB": 0, "WalltimeS": 0, "CoresPerNode": 0}, "Scheduler": "", "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z", "InputSizes": null, "Parameters": null, "Environment": "", "Submissions": 0, "TemplateDoc": null, "ClaimedUntil": "0001-01-01T00:00:00Z", "TemplateVersion": 0}', NULL);
INSERT INTO jobs VALUES (1, 'fixa', 'alice', 'succeeded', 'hello', '', 'key-a', '{"ID": "fixa", "Name": "first", "Depth": 0, "Error": "exit code 3", "Owner": "alice", "State": "succeeded", "Usage": {"CPUSeconds": 12.5, "MaxRSSBytes": 1048576, "WallSeconds": 60.25}, "Inputs": {"text": "in/story.txt"}, "Labels": {"team": "x", "sweep": "a"}, "Reason": "to succeeded", "IdemKey": "key-a", "ExitCode": 3, "IdemHash": "9f86d081884c7d65", "ParentID": "", "Template": "hello", "BackendID": "4711", "ClaimedBy": "replica-1", "CreatedAt": "2025-03-04T05:06:07.123456Z", "Resources": {"Nodes": 2, "MemoryMB": 2048, "WalltimeS": 3600, "CoresPerNode": 4}, "Scheduler": "slurm", "StartedAt": "2025-03-04T05:06:17.123456Z", "FinishedAt": "2025-03-04T05:07:17.123456Z", "InputSizes": {"text": 42}, "Parameters": null, "Environment": "slurm", "Submissions": 1, "TemplateDoc": {"name": "hello", "script": "echo {{.name}}", "version": 3}, "ClaimedUntil": "2025-03-04T05:07:07.123456Z", "TemplateVersion": 3}', '{"zeta":1,"a":[1.50,"x"]}');
INSERT INTO logs VALUES ('fixa', 'stdout', 0, '\x68656c6c6f20');
INSERT INTO logs VALUES ('fixa', 'stdout', 6, '\x776f726c640a');
INSERT INTO logs VALUES ('fixa', 'stderr', 0, '\x7761726e0a');
INSERT INTO schema_version VALUES (1, '2026-11-25 19:46:07.680713+00');
INSERT INTO tokens VALUES ('tok1', 'hash1', 'alice', 'laptop', '{jobs:read,jobs:write}', '', '2025-03-04 05:06:07.123456+00', '2025-03-05 05:06:07.123456+00');
INSERT INTO tokens VALUES ('tok2', 'hash2', 'alice', 'job fixa', '{job}', 'fixa', '2025-03-04 05:06:07.123456+00', NULL);
SELECT pg_catalog.setval('jobs_seq_seq', 3, true);
ALTER TABLE ONLY events
    ADD CONSTRAINT events_pkey PRIMARY KEY (job_id, seq);
ALTER TABLE ONLY jobs
    ADD CONSTRAINT jobs_id UNIQUE (id);
ALTER TABLE ONLY jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (seq);
ALTER TABLE ONLY logs
    ADD CONSTRAINT logs_pkey PRIMARY KEY (job_id, stream, off);
ALTER TABLE ONLY schema_version
    ADD CONSTRAINT schema_version_pkey PRIMARY KEY (version);
ALTER TABLE ONLY tokens
    ADD CONSTRAINT tokens_hash UNIQUE (hash);
ALTER TABLE ONLY tokens
    ADD CONSTRAINT tokens_pkey PRIMARY KEY (id);
CREATE UNIQUE INDEX jobs_idem ON jobs USING btree (owner, idem_key) WHERE (idem_key IS NOT NULL);
CREATE INDEX jobs_owner ON jobs USING btree (owner, seq);
CREATE INDEX jobs_parent ON jobs USING btree (parent_id, seq) WHERE (parent_id <> ''::text);
CREATE INDEX jobs_state ON jobs USING btree (state, seq);
CREATE INDEX tokens_job ON tokens USING btree (job_id) WHERE (job_id <> ''::text);
CREATE INDEX tokens_user ON tokens USING btree (username, created_at);
