-- Schema version 10: due webhook deliveries are read a few of each
-- owner's at a time, the owners found by a skip over this index, each
-- owner's longest due by a range of it: not a sort of every due row at
-- each read, which a flood of one owner's made quadratic.
CREATE INDEX deliveries_owner_due ON deliveries (owner, next_at, id);
