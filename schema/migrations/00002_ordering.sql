-- Per-asset ordering: each row gets order_seq, a sequence number per
-- (app_id, data->>'asset_id') taken at INSERT while holding that key's row
-- in outbox_order_key until the transaction ends. A second transaction
-- writing the same key waits for the first to commit or roll back, so within
-- a key order_seq follows commit order even when ids do not (ids are
-- assigned before the wait). The relay sends a row only when no row of its
-- key with a lower order_seq is still undelivered.
--
-- Cost to producers: one upsert per row, and writers of one asset's events
-- are serialised (writers of different assets never wait for each other). A
-- transaction that emits events of several assets holds their keys until it
-- ends, as it holds the locks of the rows it updates.

-- +goose Up
SET LOCAL lock_timeout = '10s';

CREATE TABLE outbox_order_key (
    app_id   text NOT NULL,
    asset_id text NOT NULL,
    last_seq bigint NOT NULL,
    PRIMARY KEY (app_id, asset_id)
);

ALTER TABLE outbox ADD COLUMN order_seq bigint;
COMMENT ON COLUMN outbox.order_seq IS 'Position of the row among the rows of its (app_id, data.asset_id), in commit order.';

-- The relay's check for an earlier undelivered row of a key, and the lookup
-- of the next row waiting on it: index-only on undelivered rows.
CREATE INDEX outbox_order_idx ON outbox (app_id, (data ->> 'asset_id'), order_seq)
    WHERE delivered_at IS NULL;

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

-- Fires after outbox_1_validate (BEFORE triggers run in name order), so
-- only valid rows take a number. A value given for order_seq at INSERT is
-- overwritten.
CREATE TRIGGER outbox_2_order
    BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_order();

-- +goose Down
SET LOCAL lock_timeout = '10s';
DROP TRIGGER outbox_2_order ON outbox;
DROP FUNCTION outbox_order();
DROP INDEX outbox_order_idx;
ALTER TABLE outbox DROP COLUMN order_seq;
DROP TABLE outbox_order_key;
