-- 0002: each request key carries the time of its write, so that keys older
-- than the retention can be pruned (Store.PruneRequests), oldest first. Keys
-- written before this migration take the time it ran.
ALTER TABLE requests ADD COLUMN created timestamptz NOT NULL DEFAULT now();
CREATE INDEX requests_created ON requests (created);
