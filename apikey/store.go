package apikey

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mediaplatform/relay/outbox"
)

const (
	createSQL = `
INSERT INTO api_key (app_id, name, prefix, key_hash) VALUES ($1, $2, $3, $4)
RETURNING id, app_id, name, prefix, created_at, last_used_at, revoked_at`

	listSQL = `
SELECT id, app_id, name, prefix, created_at, last_used_at, revoked_at
  FROM api_key
 WHERE $1::text IS NULL OR app_id = $1
 ORDER BY app_id, id`

	revokeSQL = `
UPDATE api_key SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
RETURNING id, app_id, name, prefix, created_at, last_used_at, revoked_at`

	lookupSQL = `
SELECT id, app_id, last_used_at FROM api_key WHERE key_hash = $1 AND revoked_at IS NULL`

	// touchSQL records use at most once a minute per key, so that a busy
	// key does not write a row version per request.
	touchSQL = `
UPDATE api_key SET last_used_at = now()
 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`
)

// touchEvery is how stale last_used_at may get.
const touchEvery = time.Minute

// MaxNameLength bounds a key's name.
const MaxNameLength = 200

// ErrNotFound is returned by Revoke for an id that names no key.
var ErrNotFound = errors.New("api key not found")

// ErrUnauthenticated is returned by an Authenticator when the request
// carries no credentials or credentials it does not accept. The API
// answers 401; anything else an Authenticator returns is a 503.
var ErrUnauthenticated = errors.New("unauthenticated")

// DB runs queries: a pool, a connection or a transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Principal is who a request acts for.
type Principal struct {
	// AppID is the account: the outbox app_id and Svix application uid.
	AppID string
	// KeyID identifies the credential, for rate limits and logs; never
	// the credential itself.
	KeyID string
}

// Authenticator tells who sent a request. It returns ErrUnauthenticated
// (possibly wrapped) when the request carries no valid credentials.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// Key is a stored API key, without the key itself.
type Key struct {
	ID         int64      `json:"id"`
	AppID      string     `json:"app_id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

// Store creates, lists and revokes keys in the api_key table, and
// authenticates requests with them.
type Store struct {
	db DB
}

var _ Authenticator = (*Store)(nil)

// NewStore returns a Store on db.
func NewStore(db DB) *Store { return &Store{db: db} }

// Create makes a key for appID and returns it with its text, which is
// nowhere else: show it once.
func (s *Store) Create(ctx context.Context, appID, name string) (Key, string, error) {
	if err := outbox.ValidateAppID(appID); err != nil {
		return Key{}, "", err
	}
	if n := utf8.RuneCountInString(name); n > MaxNameLength {
		return Key{}, "", fmt.Errorf("name must be at most %d characters, got %d", MaxNameLength, n)
	}
	text, err := generate()
	if err != nil {
		return Key{}, "", fmt.Errorf("generate api key: %w", err)
	}
	k, err := scanKey(s.db.QueryRow(ctx, createSQL, appID, name, text[:displayLength], hash(text)))
	if err != nil {
		return Key{}, "", fmt.Errorf("create api key: %w", err)
	}
	return k, text, nil
}

// List returns the keys of appID, or of every account when appID is "",
// revoked ones included.
func (s *Store) List(ctx context.Context, appID string) ([]Key, error) {
	var filter *string
	if appID != "" {
		filter = &appID
	}
	rows, err := s.db.Query(ctx, listSQL, filter)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

// Revoke makes key id unusable from now on and returns it; ErrNotFound
// when there is no such key. Revoking a revoked key changes nothing.
func (s *Store) Revoke(ctx context.Context, id int64) (Key, error) {
	k, err := scanKey(s.db.QueryRow(ctx, revokeSQL, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("revoke api key %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Key{}, fmt.Errorf("revoke api key %d: %w", id, err)
	}
	return k, nil
}

// Authenticate reads "Authorization: Bearer <key>" and looks the key up by
// its hash.
func (s *Store) Authenticate(r *http.Request) (Principal, error) {
	scheme, text, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, ErrUnauthenticated
	}
	text = strings.TrimSpace(text)
	if !wellFormed(text) {
		return Principal{}, ErrUnauthenticated
	}
	ctx := r.Context()
	var (
		id       int64
		appID    string
		lastUsed *time.Time
	)
	err := s.db.QueryRow(ctx, lookupSQL, hash(text)).Scan(&id, &appID, &lastUsed)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("look up api key: %w", err)
	}
	if lastUsed == nil || time.Since(*lastUsed) > touchEvery {
		if _, err := s.db.Exec(ctx, touchSQL, id); err != nil {
			return Principal{}, fmt.Errorf("record api key use: %w", err)
		}
	}
	return Principal{AppID: appID, KeyID: fmt.Sprintf("key_%d", id)}, nil
}

func scanKey(row pgx.Row) (Key, error) {
	var k Key
	err := row.Scan(&k.ID, &k.AppID, &k.Name, &k.Prefix, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt)
	return k, err
}
