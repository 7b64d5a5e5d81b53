-- The public endpoint API's tables: API keys (stored only as a SHA-256 hash,
-- looked up by it) and the Idempotency-Key answers of its POST requests, kept
-- in the database so that every replica of `relay serve` sees them.

-- +goose Up
SET LOCAL lock_timeout = '10s';

CREATE TABLE api_key (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id       text NOT NULL CHECK (char_length(app_id) BETWEEN 1 AND 256 AND app_id ~ '^[A-Za-z0-9._-]+$' AND app_id !~ '^(app_|ep_|msg_)'),
    name         text NOT NULL DEFAULT '' CHECK (char_length(name) <= 200),
    prefix       text NOT NULL,
    key_hash     bytea NOT NULL CHECK (octet_length(key_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
COMMENT ON TABLE api_key IS 'API keys of the public endpoint API: the key itself is never stored, only its SHA-256.';
COMMENT ON COLUMN api_key.prefix IS 'The first characters of the key, shown to people to tell keys apart; not enough to use it.';

-- Authentication looks a key up by its hash: one index probe.
CREATE UNIQUE INDEX api_key_hash_idx ON api_key (key_hash);
CREATE INDEX api_key_app_idx ON api_key (app_id, id);

CREATE TABLE api_idempotency (
    app_id       text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    -- Null while the first request runs; then its answer.
    status       integer,
    response     bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, key)
);
COMMENT ON TABLE api_idempotency IS 'First answers to POST requests carrying an Idempotency-Key, replayed for 24 hours, then pruned.';

CREATE INDEX api_idempotency_created_idx ON api_idempotency (created_at);

-- +goose Down
SET LOCAL lock_timeout = '10s';
DROP TABLE api_idempotency;
DROP TABLE api_key;
