-- Schema version 15: a web session's key. Browsers send a host's cookies
-- to every port of it, so another program on the gateway's host could
-- read a session's cookie: what changes something needs the key too,
-- which the page keeps in storage of its own origin (port included).
ALTER TABLE tokens ADD COLUMN session_key TEXT NOT NULL DEFAULT '';
-- Sessions made before have no key: they could change nothing, yet read
-- for up to 12 hours. They end; their users sign in again.
DELETE FROM tokens WHERE name LIKE 'web session%';
