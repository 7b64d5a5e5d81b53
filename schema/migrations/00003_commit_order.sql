-- Commit order: every row gets commit_seq, its position in the order in
-- which rows became visible (committed), assigned after commit by
-- outbox_sequence(), one serialized step that any relay process may run.
--
-- Why not the id: ids are taken at INSERT, so a transaction holding id 10
-- can commit after one holding id 11; a reader that saw 11 and resumes
-- "after 11" never sees 10. Why not pg_current_xact_id() read below the
-- snapshot's xmin: one transaction left open anywhere (an idle session, a
-- long report) holds every later row back. outbox_sequence() numbers the
-- rows its snapshot sees, under a lock, so a row is numbered within one
-- sequencing step of its commit, whatever else is still open, and every
-- number is above every number handed out before it.
--
-- The guarantee: rows are numbered in the order their transactions became
-- visible to the sequencer, step by step; rows that become visible in the
-- same step (commits racing each other within milliseconds) are numbered by
-- id, which is insertion order. So a row inserted after another row's
-- transaction committed (the usual case: the product saw "pending_payment"
-- committed, then wrote "ready") always gets the higher number, and the
-- numbers of concurrent transactions follow their commits up to the length
-- of a step. PostgreSQL keeps no finer commit order without
-- track_commit_timestamp, which this does not rely on.
--
-- The per-asset ordering of deliveries and the live stream's cursor both
-- follow commit_seq. Producers take no lock and wait for no one.

-- +goose Up
SET LOCAL lock_timeout = '10s';

-- Never reset: a cursor holds a commit_seq, so numbers are never reused,
-- even after every row is pruned.
CREATE SEQUENCE outbox_commit_seq AS bigint;

ALTER TABLE outbox ADD COLUMN commit_seq bigint;
COMMENT ON COLUMN outbox.commit_seq IS 'Position of the row in commit order, set by outbox_sequence() shortly after commit; NULL until then.';

-- Rows waiting for a number: the sequencer's claim, in id order.
CREATE INDEX outbox_unsequenced_idx ON outbox (id) WHERE commit_seq IS NULL;
-- The stream's read: rows after a cursor, in commit order.
CREATE UNIQUE INDEX outbox_commit_seq_idx ON outbox (commit_seq);

-- +goose StatementBegin
CREATE FUNCTION outbox_sequence(max_rows integer DEFAULT 5000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    numbered integer;
    base     bigint;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'outbox_sequence: max_rows must be at least 1, got %', max_rows
            USING ERRCODE = '22023';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'outbox_sequence must run at READ COMMITTED, not %', current_setting('transaction_isolation')
            USING ERRCODE = '25000',
                  HINT = 'Call it on its own: SELECT outbox_sequence();';
    END IF;
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'outbox_sequence must run in a transaction that has written nothing'
            USING ERRCODE = '25000',
                  HINT = 'It would number this transaction''s own uncommitted rows before rows that commit earlier. Call it on its own: SELECT outbox_sequence();';
    END IF;

    -- One sequencer at a time, per outbox table. The statements below take
    -- their snapshot after the lock is held, so they see every row the
    -- previous holder numbered and every row committed before now.
    PERFORM pg_advisory_xact_lock(hashtextextended('relay.outbox_sequence', 'outbox'::regclass::oid::bigint));

    -- The next free number; the lock makes this the only caller that
    -- takes numbers, so reading the sequence and setting it after is safe.
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
      INTO base FROM outbox_commit_seq;

    UPDATE outbox AS o SET commit_seq = base + b.rn - 1
      FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn
              FROM outbox WHERE commit_seq IS NULL
             ORDER BY id LIMIT max_rows) AS b
     WHERE o.id = b.id;
    GET DIAGNOSTICS numbered = ROW_COUNT;
    IF numbered = 0 THEN
        RETURN 0;
    END IF;
    PERFORM setval('outbox_commit_seq', base + numbered - 1);

    PERFORM pg_notify('outbox_sequenced', '');
    RETURN numbered;
END
$$;
-- +goose StatementEnd

-- commit_seq is the relay's to set, like the other relay-owned columns: a
-- number given at INSERT would jump the row ahead of rows committed before it.
-- +goose StatementBegin
CREATE FUNCTION outbox_commit_seq_unset() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.commit_seq IS NOT NULL THEN
        RAISE EXCEPTION 'outbox.commit_seq is set by the relay and must be null at INSERT'
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'commit_seq', CONSTRAINT = 'relay_owned';
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER outbox_1_commit_seq_unset
    BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_commit_seq_unset();

COMMENT ON FUNCTION outbox_sequence(integer) IS 'Numbers up to max_rows committed rows in commit order; returns how many. Run on its own, at READ COMMITTED.';
ALTER FUNCTION outbox_sequence(integer) SET search_path FROM CURRENT;

-- +goose Down
SET LOCAL lock_timeout = '10s';
DROP FUNCTION outbox_sequence(integer);
DROP TRIGGER outbox_1_commit_seq_unset ON outbox;
DROP FUNCTION outbox_commit_seq_unset();
DROP INDEX outbox_commit_seq_idx;
DROP INDEX outbox_unsequenced_idx;
ALTER TABLE outbox DROP COLUMN commit_seq;
DROP SEQUENCE outbox_commit_seq;
