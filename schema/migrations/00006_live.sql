-- The live stream's cursor bookkeeping (package live).
--
-- A cursor is (epoch, commit_seq). The epoch is random, made once per
-- database by this migration, so a cursor from another database (a reset
-- or re-created one) is recognised and answered with a reset instead of
-- a silent gap. pruned_through is the highest commit_seq ever deleted
-- from the outbox: a cursor below it may have lost rows to retention, so
-- it gets a reset too. Deletes keep it current through a statement
-- trigger (one UPDATE per DELETE statement, none when nothing sequenced
-- was deleted), and so does TRUNCATE.

-- +goose Up
SET LOCAL lock_timeout = '10s';

CREATE TABLE outbox_live (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch          text NOT NULL DEFAULT lpad(to_hex((random() * 4294967295)::bigint), 8, '0')
                                      || lpad(to_hex((random() * 4294967295)::bigint), 8, '0'),
    pruned_through bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE outbox_live IS 'One row: the live stream''s cursor epoch and the highest commit_seq deleted from the outbox.';
COMMENT ON COLUMN outbox_live.epoch IS 'Changes only when the database is re-created; set a new one after restoring an older backup (UPDATE outbox_live SET epoch = ...) so clients reset.';
INSERT INTO outbox_live DEFAULT VALUES;

-- Replays read one account's rows after a cursor, in commit order.
CREATE INDEX outbox_live_replay_idx ON outbox (app_id, commit_seq) WHERE commit_seq IS NOT NULL;

-- +goose StatementBegin
CREATE FUNCTION outbox_live_pruned() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    top bigint;
BEGIN
    SELECT max(commit_seq) INTO top FROM outbox_live_old_rows;
    IF top IS NOT NULL THEN
        UPDATE outbox_live SET pruned_through = top WHERE pruned_through < top;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
ALTER FUNCTION outbox_live_pruned() SET search_path FROM CURRENT;

CREATE TRIGGER outbox_live_pruned
    AFTER DELETE ON outbox
    REFERENCING OLD TABLE AS outbox_live_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_live_pruned();

-- TRUNCATE fires no DELETE trigger: every number handed out is gone.
-- +goose StatementBegin
CREATE FUNCTION outbox_live_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox_live
       SET pruned_through = greatest(pruned_through,
                                     (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outbox_commit_seq));
    RETURN NULL;
END
$$;
-- +goose StatementEnd
ALTER FUNCTION outbox_live_truncated() SET search_path FROM CURRENT;

CREATE TRIGGER outbox_live_truncated
    AFTER TRUNCATE ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_live_truncated();

-- +goose Down
SET LOCAL lock_timeout = '10s';
DROP TRIGGER outbox_live_truncated ON outbox;
DROP FUNCTION outbox_live_truncated();
DROP TRIGGER outbox_live_pruned ON outbox;
DROP FUNCTION outbox_live_pruned();
DROP INDEX outbox_live_replay_idx;
DROP TABLE outbox_live;
