-- The one definition of a row's state.
--
--   pending      enqueued_at, delivered_at and failed_at all NULL: not yet
--                handed to the relay's job queue
--   in flight    enqueued_at set, neither delivered nor failed: owned by a
--                batch job (being sent or waiting for its retry)
--   undelivered  pending or in flight
--   delivered    delivered_at set
--   failed       failed_at set (given up until outbox_replay)
--
-- outbox_row_state(outbox) names a row's state; the views outbox_pending
-- and outbox_undelivered select the rows of the states the relay's status
-- and metrics count. outbox_undelivered's predicate is
-- outbox_undelivered_idx's word for word (and outbox_pending's implies
-- it), so a query on a view is planned like one on outbox with that WHERE
-- clause and is served by the index. The views carry only id and created_at: a column added to
-- outbox later needs no change here, and status and metrics read no more.
--
-- The relay's hot claim queries test the same states with num_nulls(...),
-- on purpose: the planner cannot match that to a partial index, so a
-- table whose statistics are stale cannot lure it into scanning one whole
-- (see dispatch/feeder.go).

-- +goose Up
SET LOCAL lock_timeout = '10s';

CREATE VIEW outbox_pending AS
SELECT id, created_at FROM outbox
 WHERE enqueued_at IS NULL AND delivered_at IS NULL AND failed_at IS NULL;
COMMENT ON VIEW outbox_pending IS 'Rows not yet handed to the relay''s job queue (served by outbox_undelivered_idx).';

CREATE VIEW outbox_undelivered AS
SELECT id, created_at FROM outbox
 WHERE delivered_at IS NULL AND failed_at IS NULL;
COMMENT ON VIEW outbox_undelivered IS 'Rows pending or in flight: neither delivered nor failed (outbox_undelivered_idx).';

CREATE FUNCTION outbox_row_state(o outbox) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN o.failed_at IS NOT NULL THEN 'failed'
        WHEN o.delivered_at IS NOT NULL THEN 'delivered'
        WHEN o.enqueued_at IS NULL THEN 'pending'
        ELSE 'in_flight'
    END;
COMMENT ON FUNCTION outbox_row_state(outbox) IS 'A row''s state: pending, in_flight, delivered or failed.';

-- +goose Down
SET LOCAL lock_timeout = '10s';
DROP FUNCTION outbox_row_state(outbox);
DROP VIEW outbox_undelivered;
DROP VIEW outbox_pending;
