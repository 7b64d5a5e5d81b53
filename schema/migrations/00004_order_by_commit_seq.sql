-- Per-key order follows commit_seq (00003): producers take no lock.
--
-- 00002 numbered each row within its (app_id, data.asset_id) at INSERT while
-- holding the key's row in outbox_order_key until the transaction ended, so
-- writers of one asset waited for each other and writers of several assets
-- in different orders deadlocked (40P01). This drops that trigger; the relay
-- now orders a key's rows by commit_seq, which it assigns after commit.
--
-- Online: every step is short or takes no lock that blocks producers.
--   1. Drop the trigger, its function and outbox_order_key (one short
--      transaction under lock_timeout).
--   2. Rows written under 00002 and not yet delivered keep their order_seq
--      order: for each key whose order_seq order differs from its id order
--      (two transactions of one asset committed in the other order than
--      their ids), those rows are given fresh commit_seq numbers in order_seq
--      order, under the sequencer's lock, as one sequencing step would. Keys
--      in id order need nothing: the sequencer numbers them in id order.
--   3. Build the relay's per-key index on commit_seq and drop the indexes
--      this design no longer reads, CONCURRENTLY.
--   4. Leave room on each page for the relay's in-place (HOT) updates.
-- order_seq is kept, for the record, and no longer set.

-- +goose NO TRANSACTION
-- +goose Up
BEGIN;
SET LOCAL lock_timeout = '10s';
DROP TRIGGER IF EXISTS outbox_2_order ON outbox;
DROP FUNCTION IF EXISTS outbox_order();
DROP TABLE IF EXISTS outbox_order_key;
COMMENT ON COLUMN outbox.order_seq IS 'Position among the rows of its asset under migration 00002 (rows written before 00004); no longer set.';
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS first_attempt_at timestamptz;
COMMENT ON COLUMN outbox.first_attempt_at IS 'When the relay first sent the row under its current key; before re-sending past Svix''s idempotency window it looks the message up.';
COMMIT;

BEGIN;
SET LOCAL lock_timeout = '10s';
SELECT pg_advisory_xact_lock(hashtextextended('relay.outbox_sequence', 'outbox'::regclass::oid::bigint));
WITH legacy AS (
    SELECT id, app_id, data ->> 'asset_id' AS asset_id, order_seq,
           row_number() OVER (PARTITION BY app_id, data ->> 'asset_id' ORDER BY order_seq) AS by_order,
           row_number() OVER (PARTITION BY app_id, data ->> 'asset_id' ORDER BY id) AS by_id
      FROM outbox
     WHERE order_seq IS NOT NULL AND delivered_at IS NULL
), inverted AS (
    SELECT DISTINCT app_id, asset_id FROM legacy WHERE by_order <> by_id
), renumber AS (
    SELECT l.id, row_number() OVER (ORDER BY l.app_id, l.asset_id, l.order_seq) AS rn
      FROM legacy l JOIN inverted i USING (app_id, asset_id)
), done AS (
    UPDATE outbox o SET commit_seq = r.rn - 1 +
           (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM outbox_commit_seq)
      FROM renumber r
     WHERE o.id = r.id
    RETURNING o.commit_seq
)
SELECT setval('outbox_commit_seq', max(commit_seq)) FROM done HAVING count(*) > 0;
COMMIT;

-- The relay's per-key reads: the head of a key (its lowest commit_seq not
-- yet delivered) and whether a row has an earlier one. Failed rows stay in
-- it for --block-on-failure.
--
-- A small table (under 64 MB, the usual outbox with retention) gets the
-- index in a plain transaction, built in well under a second. A larger one
-- is built CONCURRENTLY below (the statements are no-ops for a small one):
-- that takes no lock that blocks producers, but waits for every transaction
-- in the database that started before it, so a session left idle in a
-- transaction holds the migration (not the producers) until it ends.
BEGIN;
SET LOCAL lock_timeout = '10s';
-- +goose StatementBegin
DO $$
BEGIN
    IF pg_relation_size('outbox') < 64 * 1024 * 1024 THEN
        CREATE INDEX IF NOT EXISTS outbox_key_idx ON outbox (app_id, (data ->> 'asset_id'), commit_seq)
            WHERE delivered_at IS NULL;
        DROP INDEX IF EXISTS outbox_order_idx;
        DROP INDEX IF EXISTS outbox_pending_idx;
    END IF;
END
$$;
-- +goose StatementEnd
COMMIT;
CREATE INDEX CONCURRENTLY IF NOT EXISTS outbox_key_idx ON outbox (app_id, (data ->> 'asset_id'), commit_seq)
    WHERE delivered_at IS NULL;
-- Superseded: order_seq is no longer read, and a predicate on enqueued_at
-- would keep the relay's claim from updating rows in place.
DROP INDEX CONCURRENTLY IF EXISTS outbox_order_idx;
DROP INDEX CONCURRENTLY IF EXISTS outbox_pending_idx;

BEGIN;
SET LOCAL lock_timeout = '10s';
ALTER TABLE outbox SET (fillfactor = 85);
-- outbox_replay also tells the relay that a row went back to waiting, so
-- it looks again at rows it had already passed.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_replay(replay_id bigint, force boolean DEFAULT false) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    delivered timestamptz;
BEGIN
    SELECT o.delivered_at INTO delivered FROM outbox o WHERE o.id = replay_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF delivered IS NOT NULL THEN
        IF NOT force THEN
            RETURN true;
        END IF;
        UPDATE outbox SET delivered_at = NULL, svix_message_id = NULL, resends = resends + 1,
                          attempts = 0, enqueued_at = NULL, job_id = NULL, replayed_at = clock_timestamp()
         WHERE id = replay_id;
    ELSE
        UPDATE outbox SET failed_at = NULL, last_error = NULL, attempts = 0,
                          enqueued_at = NULL, job_id = NULL, replayed_at = clock_timestamp()
         WHERE id = replay_id;
    END IF;
    PERFORM pg_notify('outbox', 'replay');
    RETURN true;
END
$$;
-- +goose StatementEnd
ALTER FUNCTION outbox_replay(bigint, boolean) SET search_path FROM CURRENT;
COMMIT;

-- +goose Down
BEGIN;
SET LOCAL lock_timeout = '10s';
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_replay(replay_id bigint, force boolean DEFAULT false) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    delivered timestamptz;
BEGIN
    SELECT o.delivered_at INTO delivered FROM outbox o WHERE o.id = replay_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF delivered IS NOT NULL THEN
        IF NOT force THEN
            RETURN true;
        END IF;
        UPDATE outbox SET delivered_at = NULL, svix_message_id = NULL, resends = resends + 1,
                          attempts = 0, enqueued_at = NULL, replayed_at = clock_timestamp()
         WHERE id = replay_id;
    ELSE
        UPDATE outbox SET failed_at = NULL, last_error = NULL, attempts = 0,
                          enqueued_at = NULL, replayed_at = clock_timestamp()
         WHERE id = replay_id;
    END IF;
    PERFORM pg_notify('outbox', '');
    RETURN true;
END
$$;
-- +goose StatementEnd
ALTER FUNCTION outbox_replay(bigint, boolean) SET search_path FROM CURRENT;
ALTER TABLE outbox RESET (fillfactor);
ALTER TABLE outbox DROP COLUMN IF EXISTS first_attempt_at;
COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS outbox_pending_idx ON outbox (id)
    WHERE enqueued_at IS NULL AND delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS outbox_order_idx ON outbox (app_id, (data ->> 'asset_id'), order_seq)
    WHERE delivered_at IS NULL;
DROP INDEX CONCURRENTLY IF EXISTS outbox_key_idx;

-- Rows written while 00004 was applied have no order_seq: the 00002 relay
-- sends them without waiting (as rows written before 00002).
BEGIN;
SET LOCAL lock_timeout = '10s';
CREATE TABLE outbox_order_key (
    app_id   text NOT NULL,
    asset_id text NOT NULL,
    last_seq bigint NOT NULL,
    PRIMARY KEY (app_id, asset_id)
);
INSERT INTO outbox_order_key (app_id, asset_id, last_seq)
SELECT app_id, data ->> 'asset_id', max(order_seq) FROM outbox WHERE order_seq IS NOT NULL GROUP BY 1, 2;
-- +goose StatementBegin
CREATE FUNCTION outbox_order() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_order_key AS k (app_id, asset_id, last_seq)
    VALUES (NEW.app_id, NEW.data ->> 'asset_id', 1)
    ON CONFLICT (app_id, asset_id) DO UPDATE SET last_seq = k.last_seq + 1
    RETURNING k.last_seq INTO NEW.order_seq;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
ALTER FUNCTION outbox_order() SET search_path FROM CURRENT;
CREATE TRIGGER outbox_2_order
    BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_order();
COMMIT;
