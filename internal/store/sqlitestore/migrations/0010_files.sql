-- Each user's stored files and outputs, counted (in the project '' row,
-- beside their bytes), so that a quota bounds how many: empty files cost
-- no bytes. Objects stored before are not counted, and the count never
-- goes below zero.
ALTER TABLE user_usage ADD COLUMN files INTEGER NOT NULL DEFAULT 0;
