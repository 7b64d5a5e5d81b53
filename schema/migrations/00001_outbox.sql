-- The outbox: producers INSERT a row in the same transaction as the state
-- change it announces; the relay delivers it to Svix exactly once.
--
-- Every rule on a row is enforced here, at INSERT, by outbox_validate(), so a
-- producer in any language gets the same loud refusal. Error messages name
-- the field and the rule; the CONSTRAINT field of the error carries a stable
-- rule name (app_id_charset, data_previous_state, ...).

-- +goose Up
SET LOCAL lock_timeout = '10s';

-- The event catalog: adding a type is a migration that inserts a row here.
-- previous_states, when not null, lists the values data.previous_state must
-- take for that type.
CREATE TABLE outbox_event_type (
    name            text PRIMARY KEY,
    description     text NOT NULL,
    previous_states text[]
);

INSERT INTO outbox_event_type (name, description, previous_states) VALUES
    ('cut.completed',         'A cut finished successfully.', NULL),
    ('cut.failed',            'A cut failed.', NULL),
    ('render.completed',      'A render finished successfully.', NULL),
    ('render.failed',         'A render failed.', NULL),
    ('render.cancelled',      'A render was cancelled.', NULL),
    ('asset.ready',           'An asset is ready for use.', ARRAY['processing', 'pending_payment']),
    ('asset.pending_payment', 'An asset waits for payment before it becomes ready.', NULL),
    ('asset.failed',          'An asset could not be ingested.', NULL);

CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Set by the database (a value given at INSERT is overwritten).
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    app_id          text NOT NULL,
    event_type      text NOT NULL REFERENCES outbox_event_type (name),
    data            jsonb NOT NULL,

    -- Relay-owned columns: refused at INSERT unless left to their defaults.
    attempts        integer NOT NULL DEFAULT 0,
    enqueued_at     timestamptz,
    job_id          bigint,
    delivered_at    timestamptz,
    svix_message_id text,
    failed_at       timestamptz,
    last_error      text,
    resends         integer NOT NULL DEFAULT 0,
    replayed_at     timestamptz,

    CONSTRAINT outbox_delivered_or_failed CHECK (delivered_at IS NULL OR failed_at IS NULL)
);

COMMENT ON COLUMN outbox.attempts IS 'Failed Svix calls for this row since it was written or last replayed.';
COMMENT ON COLUMN outbox.enqueued_at IS 'When the relay last handed the row to its job queue; NULL means pending.';
COMMENT ON COLUMN outbox.job_id IS 'The River job (river_job.id) that delivers the row.';
COMMENT ON COLUMN outbox.delivered_at IS 'When Svix accepted the message.';
COMMENT ON COLUMN outbox.svix_message_id IS 'The msg_ id Svix assigned.';
COMMENT ON COLUMN outbox.failed_at IS 'When the row was given up on (a permanent Svix refusal or its max age); cleared by outbox_replay.';
COMMENT ON COLUMN outbox.last_error IS 'The last error seen for the row, kept after delivery for the record.';
COMMENT ON COLUMN outbox.resends IS 'Forced resends of a delivered row; part of the idempotency key.';
COMMENT ON COLUMN outbox.replayed_at IS 'When outbox_replay last re-queued the row.';

-- Pending rows, claimed in id order by the relay's feeder.
CREATE INDEX outbox_pending_idx ON outbox (id)
    WHERE enqueued_at IS NULL AND delivered_at IS NULL AND failed_at IS NULL;
-- Undelivered rows by age: lag metrics, status and the stale-claim sweep.
CREATE INDEX outbox_undelivered_idx ON outbox (created_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
-- Failed rows for on-call and metrics.
CREATE INDEX outbox_failed_idx ON outbox (failed_at) WHERE failed_at IS NOT NULL;
-- Delivered rows by time, for retention.
CREATE INDEX outbox_delivered_idx ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;

-- +goose StatementBegin
CREATE FUNCTION outbox_validate() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    states text[];
    size   integer;
BEGIN
    -- app_id: a valid Svix application uid.
    IF NEW.app_id IS NULL THEN
        RAISE EXCEPTION 'outbox.app_id must not be null'
            USING ERRCODE = 'not_null_violation', TABLE = 'outbox', COLUMN = 'app_id', CONSTRAINT = 'app_id_required';
    END IF;
    IF char_length(NEW.app_id) NOT BETWEEN 1 AND 256 THEN
        RAISE EXCEPTION 'outbox.app_id must be 1 to 256 characters long, got %', char_length(NEW.app_id)
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'app_id', CONSTRAINT = 'app_id_length';
    END IF;
    IF NEW.app_id !~ '^[A-Za-z0-9._-]+$' THEN
        RAISE EXCEPTION 'outbox.app_id must contain only A-Z, a-z, 0-9, "-", "_" and ".", got %', to_json(left(NEW.app_id, 64))
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'app_id', CONSTRAINT = 'app_id_charset';
    END IF;
    IF NEW.app_id LIKE 'app\_%' OR NEW.app_id LIKE 'ep\_%' OR NEW.app_id LIKE 'msg\_%' THEN
        RAISE EXCEPTION 'outbox.app_id must not start with "app_", "ep_" or "msg_", got %', to_json(left(NEW.app_id, 64))
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'app_id', CONSTRAINT = 'app_id_prefix';
    END IF;

    -- event_type: one of the catalog.
    IF NEW.event_type IS NULL THEN
        RAISE EXCEPTION 'outbox.event_type must not be null'
            USING ERRCODE = 'not_null_violation', TABLE = 'outbox', COLUMN = 'event_type', CONSTRAINT = 'event_type_required';
    END IF;
    SELECT t.previous_states INTO states FROM outbox_event_type t WHERE t.name = NEW.event_type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'outbox.event_type must be one of %, got %',
                (SELECT string_agg(t.name, ', ' ORDER BY t.name) FROM outbox_event_type t),
                to_json(left(NEW.event_type, 64))
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'event_type', CONSTRAINT = 'event_type_known';
    END IF;

    -- data: a small JSON object naming the entity and its asset.
    IF NEW.data IS NULL THEN
        RAISE EXCEPTION 'outbox.data must not be null'
            USING ERRCODE = 'not_null_violation', TABLE = 'outbox', COLUMN = 'data', CONSTRAINT = 'data_required';
    END IF;
    IF jsonb_typeof(NEW.data) <> 'object' THEN
        RAISE EXCEPTION 'outbox.data must be a JSON object, got %', jsonb_typeof(NEW.data)
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'data', CONSTRAINT = 'data_object';
    END IF;
    size := octet_length(NEW.data::text);
    IF size > 65536 THEN
        RAISE EXCEPTION 'outbox.data must be at most 65536 bytes as JSON text, got %', size
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'data', CONSTRAINT = 'data_size';
    END IF;
    IF jsonb_path_exists(NEW.data, 'strict $.**{33}') THEN
        RAISE EXCEPTION 'outbox.data must not nest values more than 32 levels deep'
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'data', CONSTRAINT = 'data_depth';
    END IF;
    IF jsonb_typeof(NEW.data -> 'entity_id') IS DISTINCT FROM 'string' OR char_length(NEW.data ->> 'entity_id') NOT BETWEEN 1 AND 256 THEN
        RAISE EXCEPTION 'outbox.data.entity_id must be a non-empty string of at most 256 characters'
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'data', CONSTRAINT = 'data_entity_id';
    END IF;
    IF jsonb_typeof(NEW.data -> 'asset_id') IS DISTINCT FROM 'string' OR char_length(NEW.data ->> 'asset_id') NOT BETWEEN 1 AND 256 THEN
        RAISE EXCEPTION 'outbox.data.asset_id must be a non-empty string of at most 256 characters'
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'data', CONSTRAINT = 'data_asset_id';
    END IF;
    IF states IS NOT NULL AND (jsonb_typeof(NEW.data -> 'previous_state') IS DISTINCT FROM 'string'
                               OR NOT (NEW.data ->> 'previous_state' = ANY (states))) THEN
        RAISE EXCEPTION 'outbox.data.previous_state must be one of % for %', array_to_string(states, ', '), NEW.event_type
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'data', CONSTRAINT = 'data_previous_state';
    END IF;

    IF TG_OP = 'INSERT' THEN
        -- Relay-owned columns start empty; refusing a value here keeps a
        -- producer from marking its own row delivered by mistake.
        IF NEW.attempts <> 0 OR NEW.resends <> 0 THEN
            RAISE EXCEPTION 'outbox.% is set by the relay and must be 0 at INSERT',
                    CASE WHEN NEW.attempts <> 0 THEN 'attempts' ELSE 'resends' END
                USING ERRCODE = 'check_violation', TABLE = 'outbox', CONSTRAINT = 'relay_owned';
        END IF;
        IF num_nonnulls(NEW.enqueued_at, NEW.job_id, NEW.delivered_at, NEW.svix_message_id, NEW.failed_at, NEW.last_error, NEW.replayed_at) > 0 THEN
            RAISE EXCEPTION 'outbox.% is set by the relay and must be null at INSERT',
                    CASE WHEN NEW.enqueued_at IS NOT NULL THEN 'enqueued_at'
                         WHEN NEW.job_id IS NOT NULL THEN 'job_id'
                         WHEN NEW.delivered_at IS NOT NULL THEN 'delivered_at'
                         WHEN NEW.svix_message_id IS NOT NULL THEN 'svix_message_id'
                         WHEN NEW.failed_at IS NOT NULL THEN 'failed_at'
                         WHEN NEW.last_error IS NOT NULL THEN 'last_error'
                         ELSE 'replayed_at' END
                USING ERRCODE = 'check_violation', TABLE = 'outbox', CONSTRAINT = 'relay_owned';
        END IF;
        NEW.created_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- BEFORE triggers fire in name order: validation first.
CREATE TRIGGER outbox_1_validate
    BEFORE INSERT OR UPDATE OF app_id, event_type, data ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_validate();

-- One notification per statement (a 1,000-row INSERT sends one), delivered
-- at commit. The payload is empty: the relay claims by state, never by id.
-- +goose StatementBegin
CREATE FUNCTION outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER outbox_notify
    AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- outbox_replay re-queues a row and reports whether it exists.
--   * pending, in flight or failed: clears failed_at, last_error and attempts
--     and hands the row back to the relay; the idempotency key is unchanged,
--     so Svix never sees two messages for it.
--   * delivered: nothing happens unless force is true; then the row is sent
--     again as a new message under a new key (resends + 1), recorded in
--     resends and replayed_at.
-- +goose StatementBegin
CREATE FUNCTION outbox_replay(replay_id bigint, force boolean DEFAULT false) RETURNS boolean
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

-- The functions run with the schema they were created in, so a producer
-- whose search_path lacks it can still write <schema>.outbox.
ALTER FUNCTION outbox_validate() SET search_path FROM CURRENT;
ALTER FUNCTION outbox_notify() SET search_path FROM CURRENT;
ALTER FUNCTION outbox_replay(bigint, boolean) SET search_path FROM CURRENT;

-- +goose Down
SET LOCAL lock_timeout = '10s';
DROP FUNCTION outbox_replay(bigint, boolean);
DROP TABLE outbox;
DROP FUNCTION outbox_notify();
DROP FUNCTION outbox_validate();
DROP TABLE outbox_event_type;
