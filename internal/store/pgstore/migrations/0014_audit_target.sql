-- Schema version 14: what an audited action was aimed at (the request's
-- path, or what it made): an entry named only the route, so no one could
-- tell whom an admin disabled or which token was made.
ALTER TABLE audit ADD COLUMN target text NOT NULL DEFAULT '';
