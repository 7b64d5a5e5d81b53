-- The outbox becomes a table partitioned by time (RANGE on partition_at),
-- so retention drops whole partitions instead of deleting rows one by one.
--
-- partition_at is the row's partition key: set by the database at INSERT
-- (the column's default, the transaction's start; a value given at INSERT
-- is refused), and moved forward only by retention, which moves failed
-- rows out of a partition it is about to drop (created_at never changes).
-- The primary key is (id, partition_at); ids stay unique because one
-- identity sequence hands them out. commit_seq's uniqueness comes from
-- outbox_sequence()'s serialized step, as before; its index is unique per
-- (commit_seq, partition_at).
--
-- Partitions are named outbox_pYYYYMMDD_HHMMSS (UTC start) and cover
-- outbox_partition_config.partition_interval each (1 day by default);
-- outbox_partitions_create() makes the current one and
-- partitions_ahead more (7 by default). The relay calls it from every
-- replica; it is safe to call at any time, from anywhere. There is no
-- DEFAULT partition: it would keep DETACH ... CONCURRENTLY from running and
-- make attaching a range scan it.
--
-- Online migration of an existing table, without copying a row:
--   1. Add partition_at with a constant default ('-infinity', instant) and
--      a CHECK NOT VALID matching the first partition's bound (a short
--      exclusive lock, taken with a retried 500ms lock_timeout).
--   2. Build unique indexes (id, partition_at) and (commit_seq,
--      partition_at) CONCURRENTLY, and VALIDATE the CHECK (neither blocks
--      producers). A table under 64 MB gets them in a plain transaction.
--   3. One short transaction, holding the sequencer's lock and an exclusive
--      lock on the table (retried as in 1): rename the table outbox_legacy,
--      create the partitioned outbox (same columns, identity continued,
--      triggers, constraints and indexes), ATTACH outbox_legacy as the
--      partition FROM (MINVALUE) TO ('1970-01-01'): the valid CHECK spares
--      the scan and the indexes built in 2 are attached, not rebuilt. Views
--      and functions that read outbox are recreated on the new table.
-- outbox_legacy is dropped by retention like any partition, once every row
-- in it was delivered before the retention period.

-- +goose NO TRANSACTION
-- +goose Up
BEGIN;
SET LOCAL lock_timeout = '10s';
CREATE TABLE IF NOT EXISTS outbox_partition_config (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    partition_interval interval NOT NULL DEFAULT '1 day'
        CHECK (partition_interval >= interval '1 minute'
               AND extract(year FROM partition_interval) = 0 AND extract(month FROM partition_interval) = 0),
    partitions_ahead   integer NOT NULL DEFAULT 7 CHECK (partitions_ahead BETWEEN 1 AND 1000),
    sequence_lock_key  bigint NOT NULL
);
COMMENT ON TABLE outbox_partition_config IS 'One row: how the outbox is partitioned. Change it with UPDATE; new partitions follow it.';
COMMENT ON COLUMN outbox_partition_config.partition_interval IS 'Time covered by one partition (no months or years); partitions are aligned on 2000-01-01 UTC.';
COMMENT ON COLUMN outbox_partition_config.partitions_ahead IS 'Partitions kept ready after the current one.';
COMMENT ON COLUMN outbox_partition_config.sequence_lock_key IS 'Advisory lock key of outbox_sequence(), fixed when the outbox was partitioned (the key the unpartitioned table gave, so relays running across the change share it).';
INSERT INTO outbox_partition_config (sequence_lock_key)
SELECT hashtextextended('relay.outbox_sequence', 'outbox'::regclass::oid::bigint)
 WHERE NOT EXISTS (SELECT 1 FROM outbox_partition_config);
-- A table whose row type a SQL-standard function body uses cannot take a
-- column: outbox_row_state is recreated after it.
DROP FUNCTION IF EXISTS outbox_row_state(outbox);
-- +goose StatementBegin
DO $$
DECLARE
    tries integer := 0;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'outbox'::regclass) <> 'r'
       OR EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'outbox'::regclass AND conname = 'outbox_legacy_bound') THEN
        RETURN;
    END IF;
    LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '500ms', true);
            LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE;
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            tries := tries + 1;
            IF tries >= 120 THEN
                RAISE;
            END IF;
            PERFORM pg_sleep(0.1 + random() * 0.4);
        END;
    END LOOP;
    ALTER TABLE outbox ADD COLUMN IF NOT EXISTS partition_at timestamptz NOT NULL DEFAULT '-infinity';
    ALTER TABLE outbox ADD CONSTRAINT outbox_legacy_bound CHECK (partition_at < '1970-01-01 00:00:00+00') NOT VALID;
END
$$;
-- +goose StatementEnd
CREATE FUNCTION outbox_row_state(o outbox) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN o.failed_at IS NOT NULL THEN 'failed'
        WHEN o.delivered_at IS NOT NULL THEN 'delivered'
        WHEN o.enqueued_at IS NULL THEN 'pending'
        ELSE 'in_flight'
    END;
COMMIT;

-- A small table gets its indexes in a plain transaction (built in well
-- under a second); the CONCURRENTLY statements below then do nothing.
-- CREATE INDEX CONCURRENTLY takes no lock that blocks producers but waits
-- for every transaction in the database older than it.
BEGIN;
SET LOCAL lock_timeout = '10s';
-- +goose StatementBegin
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'outbox'::regclass) = 'r' AND pg_relation_size('outbox') < 64 * 1024 * 1024 THEN
        CREATE UNIQUE INDEX IF NOT EXISTS outbox_id_partition_idx ON outbox (id, partition_at);
        CREATE UNIQUE INDEX IF NOT EXISTS outbox_commit_seq_partition_idx ON outbox (commit_seq, partition_at);
    END IF;
END
$$;
-- +goose StatementEnd
COMMIT;
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS outbox_id_partition_idx ON outbox (id, partition_at);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS outbox_commit_seq_partition_idx ON outbox (commit_seq, partition_at);

-- Reads the table without blocking writes (SHARE UPDATE EXCLUSIVE).
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'outbox'::regclass AND conname = 'outbox_legacy_bound' AND NOT convalidated) THEN
        ALTER TABLE outbox VALIDATE CONSTRAINT outbox_legacy_bound;
    END IF;
END
$$;
-- +goose StatementEnd

BEGIN;
-- +goose StatementBegin
DO $$
DECLARE
    tries      integer := 0;
    id_seq     text;
    seq_last   bigint;
    seq_called boolean;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'outbox'::regclass) <> 'r' THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
                WHERE c.relname IN ('outbox_id_partition_idx', 'outbox_commit_seq_partition_idx')
                  AND x.indrelid = 'outbox'::regclass AND NOT x.indisvalid) THEN
        RAISE EXCEPTION 'an index built CONCURRENTLY by migration 00008 is invalid (the build was interrupted)'
            USING HINT = 'DROP INDEX CONCURRENTLY outbox_id_partition_idx, outbox_commit_seq_partition_idx; then run relay migrate again.';
    END IF;

    -- No sequencer step runs across the change: it waits for this lock
    -- (the key is the unpartitioned table's, kept in the config row).
    PERFORM pg_advisory_xact_lock((SELECT sequence_lock_key FROM outbox_partition_config));
    LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '500ms', true);
            LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE;
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            tries := tries + 1;
            IF tries >= 120 THEN
                RAISE;
            END IF;
            PERFORM pg_sleep(0.1 + random() * 0.4);
        END;
    END LOOP;

    id_seq := pg_get_serial_sequence('outbox', 'id');
    EXECUTE format('SELECT last_value, is_called FROM %s', id_seq) INTO seq_last, seq_called;

    -- What reads the table by its row type or is attached to it goes;
    -- it is recreated on the partitioned table below.
    DROP FUNCTION outbox_row_state(outbox);
    DROP TRIGGER outbox_1_validate ON outbox;
    DROP TRIGGER outbox_1_commit_seq_unset ON outbox;
    DROP TRIGGER outbox_notify ON outbox;
    DROP TRIGGER outbox_live_pruned ON outbox;
    DROP TRIGGER outbox_live_truncated ON outbox;

    ALTER TABLE outbox RENAME TO outbox_legacy;
    ALTER TABLE outbox_legacy ALTER COLUMN id DROP IDENTITY;
    ALTER TABLE outbox_legacy DROP CONSTRAINT outbox_pkey;
    ALTER TABLE outbox_legacy ADD CONSTRAINT outbox_legacy_pkey PRIMARY KEY USING INDEX outbox_id_partition_idx;
    ALTER INDEX outbox_commit_seq_idx RENAME TO outbox_legacy_commit_seq_unique_idx;
    ALTER INDEX outbox_commit_seq_partition_idx RENAME TO outbox_legacy_commit_seq_idx;
    ALTER INDEX outbox_undelivered_idx RENAME TO outbox_legacy_undelivered_idx;
    ALTER INDEX outbox_failed_idx RENAME TO outbox_legacy_failed_idx;
    ALTER INDEX outbox_delivered_idx RENAME TO outbox_legacy_delivered_idx;
    ALTER INDEX outbox_unsequenced_idx RENAME TO outbox_legacy_unsequenced_idx;
    ALTER INDEX outbox_key_idx RENAME TO outbox_legacy_key_idx;
    ALTER INDEX outbox_live_replay_idx RENAME TO outbox_legacy_live_replay_idx;

    CREATE TABLE outbox (LIKE outbox_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS
                         INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING STATISTICS)
        PARTITION BY RANGE (partition_at);
    ALTER TABLE outbox DROP CONSTRAINT outbox_legacy_bound;
    ALTER TABLE outbox ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;
    ALTER TABLE outbox ALTER COLUMN partition_at SET DEFAULT now();
    ALTER TABLE outbox ADD CONSTRAINT outbox_pkey PRIMARY KEY (id, partition_at);
    ALTER TABLE outbox ADD CONSTRAINT outbox_event_type_fkey FOREIGN KEY (event_type) REFERENCES outbox_event_type (name);
    CREATE UNIQUE INDEX outbox_commit_seq_idx ON outbox (commit_seq, partition_at);
    CREATE INDEX outbox_undelivered_idx ON outbox (created_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
    CREATE INDEX outbox_failed_idx ON outbox (failed_at) WHERE failed_at IS NOT NULL;
    CREATE INDEX outbox_delivered_idx ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
    CREATE INDEX outbox_unsequenced_idx ON outbox (id) WHERE commit_seq IS NULL;
    CREATE INDEX outbox_key_idx ON outbox (app_id, (data ->> 'asset_id'), commit_seq) WHERE delivered_at IS NULL;
    CREATE INDEX outbox_live_replay_idx ON outbox (app_id, commit_seq) WHERE commit_seq IS NOT NULL;
    -- Implied by outbox_legacy_bound and NOT NULL: no scan. Every index
    -- above finds its match on outbox_legacy: none is built.
    ALTER TABLE outbox ATTACH PARTITION outbox_legacy FOR VALUES FROM (MINVALUE) TO ('1970-01-01 00:00:00+00');
    PERFORM setval(pg_get_serial_sequence('outbox', 'id'), seq_last, seq_called);
END
$$;
-- +goose StatementEnd
COMMENT ON TABLE outbox IS 'Partitioned by partition_at (see outbox_partitions); retention drops whole partitions.';
COMMENT ON COLUMN outbox.partition_at IS 'Partition key: the inserting transaction''s start, set by the database; moved forward only when retention moves a failed row out of a partition it drops.';

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_commit_seq_unset() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A failed row moved to a newer partition by retention keeps its
    -- number (see outbox_validate).
    IF current_setting('relay.outbox_move', true) = 'on' THEN
        RETURN NEW;
    END IF;
    IF NEW.commit_seq IS NOT NULL THEN
        RAISE EXCEPTION 'outbox.commit_seq is set by the relay and must be null at INSERT'
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'commit_seq', CONSTRAINT = 'relay_owned';
    END IF;
    -- The partition is chosen from partition_at before this trigger runs,
    -- so a value given at INSERT cannot be overwritten: it is refused.
    IF NEW.partition_at IS DISTINCT FROM now() THEN
        RAISE EXCEPTION 'outbox.partition_at is set by the database and must be left to its default at INSERT'
            USING ERRCODE = 'check_violation', TABLE = 'outbox', COLUMN = 'partition_at', CONSTRAINT = 'relay_owned';
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_validate() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    states text[];
    size   integer;
BEGIN
    -- A row that retention moves to a newer partition (an UPDATE of
    -- partition_at) is re-inserted there, firing INSERT triggers: it was
    -- validated when written and keeps created_at and its relay-owned
    -- columns. Only the relay's move sets relay.outbox_move.
    IF TG_OP = 'INSERT' AND current_setting('relay.outbox_move', true) = 'on' THEN
        RETURN NEW;
    END IF;

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

CREATE OR REPLACE TRIGGER outbox_1_validate
    BEFORE INSERT OR UPDATE OF app_id, event_type, data ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_validate();
CREATE OR REPLACE TRIGGER outbox_1_commit_seq_unset
    BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_commit_seq_unset();
CREATE OR REPLACE TRIGGER outbox_notify
    AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
-- A partition dropped by retention fires no DELETE trigger: retention
-- advances pruned_through itself (outbox_partition_drop_detached).
CREATE OR REPLACE TRIGGER outbox_live_pruned
    AFTER DELETE ON outbox
    REFERENCING OLD TABLE AS outbox_live_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_live_pruned();
CREATE OR REPLACE TRIGGER outbox_live_truncated
    AFTER TRUNCATE ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_live_truncated();

CREATE OR REPLACE VIEW outbox_pending AS
SELECT id, created_at FROM outbox
 WHERE enqueued_at IS NULL AND delivered_at IS NULL AND failed_at IS NULL;
CREATE OR REPLACE VIEW outbox_undelivered AS
SELECT id, created_at FROM outbox
 WHERE delivered_at IS NULL AND failed_at IS NULL;

CREATE OR REPLACE FUNCTION outbox_row_state(o outbox) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN o.failed_at IS NOT NULL THEN 'failed'
        WHEN o.delivered_at IS NOT NULL THEN 'delivered'
        WHEN o.enqueued_at IS NULL THEN 'pending'
        ELSE 'in_flight'
    END;
COMMENT ON FUNCTION outbox_row_state(outbox) IS 'A row''s state: pending, in_flight, delivered or failed.';

-- The same step as before (00003), under the lock key kept in
-- outbox_partition_config; rows are updated by their full primary key.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_sequence(max_rows integer DEFAULT 5000) RETURNS integer
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

-- outbox_replay as in 00004, and retried when retention moves the row to
-- another partition meanwhile (SQLSTATE 40001, "tuple to be locked was
-- already moved to another partition").
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_replay(replay_id bigint, force boolean DEFAULT false) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    delivered timestamptz;
    found_row boolean;
    tries     integer := 0;
BEGIN
    LOOP
        BEGIN
            SELECT o.delivered_at, true INTO delivered, found_row FROM outbox o WHERE o.id = replay_id FOR UPDATE;
            EXIT;
        EXCEPTION WHEN serialization_failure THEN
            tries := tries + 1;
            IF tries >= 10 THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    IF found_row IS NULL THEN
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

-- The outbox's partitions and their bounds (-infinity/infinity for
-- MINVALUE/MAXVALUE), oldest first.
CREATE OR REPLACE VIEW outbox_partitions AS
SELECT c.oid::regclass                                 AS partition,
       coalesce(b.m[1]::timestamptz, '-infinity')      AS from_time,
       coalesce(b.m[2]::timestamptz, 'infinity')       AS to_time,
       greatest(c.reltuples, 0)::bigint                AS rows_estimate,
       pg_total_relation_size(c.oid)                   AS bytes,
       i.inhdetachpending                              AS detach_pending
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
 CROSS JOIN LATERAL (SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid),
                            'FROM \((?:''([^'']*)''|MINVALUE)\) TO \((?:''([^'']*)''|MAXVALUE)\)') AS m) b
 WHERE i.inhparent = 'outbox'::regclass
 ORDER BY 2;
COMMENT ON VIEW outbox_partitions IS 'The outbox''s partitions: bounds, estimated rows, size, and whether a DETACH CONCURRENTLY is pending.';

-- Creates the partition that holds now() (and the one before it, for
-- transactions that started in it), then partitions_ahead more, each
-- partition_interval long and aligned on 2000-01-01 UTC, after the newest
-- existing partition. Returns how many it created. Safe to call at any
-- time from any session: calls take turns under an advisory lock, and
-- CREATE TABLE then ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on the
-- outbox, which producers' INSERTs do not wait for.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_partitions_create() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    cfg    outbox_partition_config;
    cur    timestamptz;
    stop   timestamptz;
    lo     timestamptz;
    hi     timestamptz;
    name   text;
    idx    record;
    made   integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('relay.outbox_partitions', 'outbox'::regclass::oid::bigint));
    SELECT * INTO STRICT cfg FROM outbox_partition_config;
    cur := date_bin(cfg.partition_interval, now(), '2000-01-01 00:00:00+00');
    stop := cur + cfg.partition_interval * (cfg.partitions_ahead + 1);
    SELECT max(p.to_time) INTO lo FROM outbox_partitions p WHERE p.to_time < 'infinity';
    lo := greatest(coalesce(lo, '-infinity'), cur - cfg.partition_interval);
    WHILE lo < stop LOOP
        hi := date_bin(cfg.partition_interval, lo, '2000-01-01 00:00:00+00') + cfg.partition_interval;
        name := 'outbox_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS');
        EXECUTE format('CREATE TABLE %I (LIKE outbox INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE
                        INCLUDING COMPRESSION INCLUDING STATISTICS) WITH (fillfactor = 85)', name);
        EXECUTE format('ALTER TABLE outbox ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
        -- The partition's indexes are named after the outbox's
        -- (outbox_pYYYYMMDD_HHMMSS_key_idx for outbox_key_idx).
        FOR idx IN
            SELECT ci.relname AS child, pi.relname AS parent
              FROM pg_index x
              JOIN pg_class ci ON ci.oid = x.indexrelid
              JOIN pg_inherits h ON h.inhrelid = x.indexrelid
              JOIN pg_class pi ON pi.oid = h.inhparent
             WHERE x.indrelid = format('%I', name)::regclass
               AND ci.relname <> name || substr(pi.relname, length('outbox') + 1)
        LOOP
            EXECUTE format('ALTER INDEX %I RENAME TO %I', idx.child, name || substr(idx.parent, length('outbox') + 1));
        END LOOP;
        made := made + 1;
        lo := hi;
    END LOOP;
    RETURN made;
END
$$;
-- +goose StatementEnd
COMMENT ON FUNCTION outbox_partitions_create() IS 'Creates the current partition and partitions_ahead more; returns how many it created.';

-- What keeps each partition from being dropped by a retention that drops
-- rows delivered before cutoff: NULL when nothing does. A partition goes
-- only once it ended before cutoff and every row in it was delivered
-- before cutoff; failed rows are moved to the current partition first.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_partition_blockers(cutoff timestamptz)
RETURNS TABLE (partition regclass, from_time timestamptz, to_time timestamptz, rows_estimate bigint, blocker text)
LANGUAGE sql STABLE AS $$
SELECT p.partition, p.from_time, p.to_time, p.rows_estimate,
       CASE WHEN p.detach_pending THEN 'detach pending'
            WHEN p.to_time > cutoff THEN 'newer than the retention period'
            WHEN EXISTS (SELECT 1 FROM outbox o
                          WHERE o.partition_at >= p.from_time AND o.partition_at < p.to_time
                            AND o.delivered_at IS NULL AND o.failed_at IS NULL) THEN 'undelivered rows'
            WHEN EXISTS (SELECT 1 FROM outbox o
                          WHERE o.partition_at >= p.from_time AND o.partition_at < p.to_time
                            AND o.failed_at IS NOT NULL) THEN 'failed rows'
            WHEN EXISTS (SELECT 1 FROM outbox o
                          WHERE o.partition_at >= p.from_time AND o.partition_at < p.to_time
                            AND o.delivered_at >= cutoff) THEN 'rows delivered within the retention period'
       END
  FROM outbox_partitions p
 ORDER BY p.from_time
$$;
-- +goose StatementEnd
COMMENT ON FUNCTION outbox_partition_blockers(timestamptz) IS 'Each partition and what keeps it from being dropped for a retention cutoff (NULL: droppable).';

-- Drops a partition that retention detached (ALTER TABLE outbox DETACH
-- PARTITION ... CONCURRENTLY), after checking it again: a row replayed
-- between the check and the detach puts the partition back (the CHECK
-- the detach left makes that attach scan-free) and returns false.
-- Advances outbox_live.pruned_through to the highest commit_seq dropped,
-- as the DELETE trigger does for deleted rows.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_partition_drop_detached(part regclass, from_time timestamptz, to_time timestamptz, cutoff timestamptz)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    keep boolean;
    top  bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = part) THEN
        RAISE EXCEPTION 'outbox_partition_drop_detached: % is still a partition of outbox', part
            USING ERRCODE = '55000';
    END IF;
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', part);
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE delivered_at IS NULL OR delivered_at >= $1)', part)
       INTO keep USING cutoff;
    IF keep THEN
        EXECUTE format('ALTER TABLE outbox ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%L)', part,
                       CASE WHEN from_time = '-infinity' THEN 'MINVALUE' ELSE quote_literal(from_time) END, to_time);
        RETURN false;
    END IF;
    EXECUTE format('SELECT max(commit_seq) FROM %s', part) INTO top;
    IF top IS NOT NULL THEN
        UPDATE outbox_live SET pruned_through = top WHERE pruned_through < top;
    END IF;
    EXECUTE format('DROP TABLE %s', part);
    RETURN true;
END
$$;
-- +goose StatementEnd

ALTER FUNCTION outbox_commit_seq_unset() SET search_path FROM CURRENT;
ALTER FUNCTION outbox_validate() SET search_path FROM CURRENT;
ALTER FUNCTION outbox_sequence(integer) SET search_path FROM CURRENT;
ALTER FUNCTION outbox_replay(bigint, boolean) SET search_path FROM CURRENT;
ALTER FUNCTION outbox_partitions_create() SET search_path FROM CURRENT;
ALTER FUNCTION outbox_partition_blockers(timestamptz) SET search_path FROM CURRENT;
ALTER FUNCTION outbox_partition_drop_detached(regclass, timestamptz, timestamptz, timestamptz) SET search_path FROM CURRENT;

SELECT outbox_partitions_create();
COMMIT;

-- +goose Down
-- Not online: the rows are copied back into an unpartitioned table under
-- an exclusive lock (for development databases; restore a backup rather
-- than run this on a large outbox).
BEGIN;
SET LOCAL lock_timeout = '10s';
LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE;
DROP FUNCTION outbox_partition_drop_detached(regclass, timestamptz, timestamptz, timestamptz);
DROP FUNCTION outbox_partition_blockers(timestamptz);
DROP FUNCTION outbox_partitions_create();
DROP VIEW outbox_partitions;
DROP VIEW outbox_pending;
DROP VIEW outbox_undelivered;
DROP FUNCTION outbox_row_state(outbox);
ALTER TABLE outbox RENAME TO outbox_partitioned;
CREATE TABLE outbox (LIKE outbox_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS
                     INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING STATISTICS) WITH (fillfactor = 85);
INSERT INTO outbox SELECT * FROM outbox_partitioned;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_legacy_bound;
ALTER TABLE outbox DROP COLUMN partition_at;
CREATE TEMP TABLE outbox_id_seq_state ON COMMIT DROP AS
SELECT last_value, is_called FROM outbox_id_seq;
DROP TABLE outbox_partitioned;
ALTER TABLE outbox ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;
SELECT setval('outbox_id_seq', last_value, is_called) FROM outbox_id_seq_state;
ALTER TABLE outbox ADD CONSTRAINT outbox_pkey PRIMARY KEY (id);
ALTER TABLE outbox ADD CONSTRAINT outbox_event_type_fkey FOREIGN KEY (event_type) REFERENCES outbox_event_type (name);
CREATE UNIQUE INDEX outbox_commit_seq_idx ON outbox (commit_seq);
CREATE INDEX outbox_undelivered_idx ON outbox (created_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_failed_idx ON outbox (failed_at) WHERE failed_at IS NOT NULL;
CREATE INDEX outbox_delivered_idx ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
CREATE INDEX outbox_unsequenced_idx ON outbox (id) WHERE commit_seq IS NULL;
CREATE INDEX outbox_key_idx ON outbox (app_id, (data ->> 'asset_id'), commit_seq) WHERE delivered_at IS NULL;
CREATE INDEX outbox_live_replay_idx ON outbox (app_id, commit_seq) WHERE commit_seq IS NOT NULL;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_commit_seq_unset() RETURNS trigger
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
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_sequence(max_rows integer DEFAULT 5000) RETURNS integer
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
    PERFORM pg_advisory_xact_lock(hashtextextended('relay.outbox_sequence', 'outbox'::regclass::oid::bigint));
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

CREATE TRIGGER outbox_1_validate
    BEFORE INSERT OR UPDATE OF app_id, event_type, data ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_validate();
CREATE TRIGGER outbox_1_commit_seq_unset
    BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_commit_seq_unset();
CREATE TRIGGER outbox_notify
    AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
CREATE TRIGGER outbox_live_pruned
    AFTER DELETE ON outbox
    REFERENCING OLD TABLE AS outbox_live_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_live_pruned();
CREATE TRIGGER outbox_live_truncated
    AFTER TRUNCATE ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_live_truncated();

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
DROP TABLE outbox_partition_config;
COMMIT;
