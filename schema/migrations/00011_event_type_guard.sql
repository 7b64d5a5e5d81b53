-- The outbox's event_type no longer has a foreign key to the catalog.
--
-- outbox_validate already refuses, at INSERT and UPDATE, a type the
-- catalog does not have (rule event_type_known, with the list in its
-- message), so the key's only work at INSERT was to lock the catalog's row
-- of that type (FOR KEY SHARE) until the producer's transaction ends. All
-- producers lock the same eight rows: each lock rewrote the row's xmax,
-- and two producers' locks on one row make a MultiXact. Measured with
-- pgbench on 10 partitions, 4 producers inserting single rows: 28,600 to
-- 30,000 MultiXacts per 60,000 rows (they age the tables towards
-- anti-wraparound vacuums), 713 bytes of WAL per INSERT against 628
-- without the key, and 6-24% more INSERTs per second without it. Every
-- producer also took the same catalog page's lock in turn.
--
-- What the key still did, a guard on the catalog does now: a type some
-- outbox row names cannot be deleted or renamed (SQLSTATE 23503, as the key
-- answered, constraint event_type_in_use), nor the catalog truncated while
-- the outbox has rows. The guard locks the outbox in SHARE mode until the
-- catalog change commits, so a producer's row of that type either
-- committed before the check (and is found) or waits for the change, and
-- then its validation reads the catalog without the type and refuses the
-- row. Catalog changes are migrations, rare and short; the check scans the
-- outbox (as the key's did: event_type has no index). One case the key
-- covered and the guard does not: a REPEATABLE READ or SERIALIZABLE
-- producer transaction that read the catalog before the change committed
-- validates against its snapshot, which still has the type.
--
-- Online: dropping the key takes the outbox's lock for an instant (no
-- scan), waiting at most 10 s for it; the partitions' copies of the key go
-- with it.

-- +goose Up
SET LOCAL lock_timeout = '10s';

-- +goose StatementBegin
CREATE FUNCTION outbox_event_type_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.name IS NOT DISTINCT FROM OLD.name THEN
        RETURN NEW;
    END IF;
    -- Producers inserting now finish first; those after wait for this change.
    LOCK TABLE outbox IN SHARE MODE;
    IF TG_OP = 'TRUNCATE' THEN
        IF EXISTS (SELECT 1 FROM outbox) THEN
            RAISE EXCEPTION 'outbox_event_type cannot be truncated while the outbox has rows'
                USING ERRCODE = 'foreign_key_violation', TABLE = 'outbox_event_type', CONSTRAINT = 'event_type_in_use';
        END IF;
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM outbox WHERE event_type = OLD.name) THEN
        RAISE EXCEPTION 'outbox_event_type % is named by outbox rows: it cannot be %', to_json(OLD.name),
                CASE TG_OP WHEN 'DELETE' THEN 'deleted' ELSE 'renamed' END
            USING ERRCODE = 'foreign_key_violation', TABLE = 'outbox_event_type', CONSTRAINT = 'event_type_in_use',
                  HINT = 'Rows keep the type they were written with; delete them first (retention does) or keep the type.';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
-- +goose StatementEnd
-- Pinned to the schema it is created in, as the outbox's own functions.
ALTER FUNCTION outbox_event_type_guard() SET search_path FROM CURRENT;
COMMENT ON FUNCTION outbox_event_type_guard() IS 'Refuses deleting or renaming a catalog type that outbox rows name, and truncating the catalog while the outbox has rows (what a foreign key would refuse).';

CREATE TRIGGER outbox_event_type_in_use
    BEFORE DELETE OR UPDATE OF name ON outbox_event_type
    FOR EACH ROW EXECUTE FUNCTION outbox_event_type_guard();
CREATE TRIGGER outbox_event_type_truncate
    BEFORE TRUNCATE ON outbox_event_type
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_event_type_guard();

ALTER TABLE outbox DROP CONSTRAINT outbox_event_type_fkey;

-- +goose Down
SET LOCAL lock_timeout = '10s';
ALTER TABLE outbox ADD CONSTRAINT outbox_event_type_fkey FOREIGN KEY (event_type) REFERENCES outbox_event_type (name);
DROP TRIGGER outbox_event_type_truncate ON outbox_event_type;
DROP TRIGGER outbox_event_type_in_use ON outbox_event_type;
DROP FUNCTION outbox_event_type_guard();
