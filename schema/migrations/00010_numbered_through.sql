-- The highest commit_seq a snapshot can see, without reading the outbox.
--
-- The relay asks this in every outcome transaction (the claim of a key's
-- next row is rechecked when numbers were handed out above it) and its
-- admission and the live stream read the rows numbered after a position.
-- Both read outbox_commit_seq_idx, and while a numbering step runs, the top
-- of that index holds the step's own, not yet committed entries (hundreds
-- per step while a backlog drains): every reader stepped over each of them
-- with a heap visit and waited on the page the step was writing (measured:
-- max(commit_seq) took 0.56 ms with a 3,000-row step open against 0.11 ms
-- without one, and was ~9% of PostgreSQL's busy time in a backlog drain).
--
-- outbox_sequence now writes the last number of each step it commits to
-- outbox_sequence_state.numbered_through, in the same transaction: a
-- snapshot that sees the value sees every row numbered up to it, and no
-- row is numbered above it. Readers read that one row, and bound their
-- index scans with it (commit_seq <= numbered_through), so they never
-- reach an open step's entries. The row is updated once per step (not per
-- row), in place (fillfactor 10 keeps the update on its page).
--
-- Online: the table is created and filled under the numbering lock, so a
-- step of a relay still running the previous function commits either
-- before the value is read (which counts its rows) or after this
-- migration, when it runs the new function.

-- +goose Up
CREATE TABLE outbox_sequence_state (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    numbered_through bigint  NOT NULL CHECK (numbered_through >= 0)
) WITH (fillfactor = 10);
COMMENT ON TABLE outbox_sequence_state IS 'Written by outbox_sequence only: one row.';
COMMENT ON COLUMN outbox_sequence_state.numbered_through IS 'The last commit_seq of the last committed numbering step: a snapshot that sees this value sees every row numbered up to it.';

SELECT pg_advisory_xact_lock((SELECT sequence_lock_key FROM outbox_partition_config));
INSERT INTO outbox_sequence_state (numbered_through)
SELECT coalesce(max(commit_seq), 0) FROM outbox;

-- outbox_sequence as in 00008 (with 00009's enable_sort = off), and the
-- step's last number written to outbox_sequence_state.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_sequence(max_rows integer DEFAULT 5000) RETURNS integer
LANGUAGE plpgsql SET enable_sort = off AS $$
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

    PERFORM pg_advisory_xact_lock((SELECT sequence_lock_key FROM outbox_partition_config));

    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
      INTO base FROM outbox_commit_seq;

    UPDATE outbox AS o SET commit_seq = base + b.rn - 1
      FROM (SELECT id, partition_at, row_number() OVER (ORDER BY id) AS rn
              FROM outbox WHERE commit_seq IS NULL
             ORDER BY id LIMIT max_rows) AS b
     WHERE o.id = b.id AND o.partition_at = b.partition_at;
    GET DIAGNOSTICS numbered = ROW_COUNT;
    IF numbered = 0 THEN
        RETURN 0;
    END IF;
    PERFORM setval('outbox_commit_seq', base + numbered - 1);
    UPDATE outbox_sequence_state SET numbered_through = base + numbered - 1;

    PERFORM pg_notify('outbox_sequenced', '');
    RETURN numbered;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_sequence(max_rows integer DEFAULT 5000) RETURNS integer
LANGUAGE plpgsql SET enable_sort = off AS $$
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

    PERFORM pg_advisory_xact_lock((SELECT sequence_lock_key FROM outbox_partition_config));

    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
      INTO base FROM outbox_commit_seq;

    UPDATE outbox AS o SET commit_seq = base + b.rn - 1
      FROM (SELECT id, partition_at, row_number() OVER (ORDER BY id) AS rn
              FROM outbox WHERE commit_seq IS NULL
             ORDER BY id LIMIT max_rows) AS b
     WHERE o.id = b.id AND o.partition_at = b.partition_at;
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
DROP TABLE outbox_sequence_state;
