package endpoints

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediaplatform/relay/internal/httpapi"
)

// IdempotencyHeader is the request header naming a POST's idempotency key.
const IdempotencyHeader = "Idempotency-Key"

// MaxIdempotencyKeyLength bounds an Idempotency-Key.
const MaxIdempotencyKeyLength = 255

const (
	claimIdemSQL = `
INSERT INTO api_idempotency (app_id, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (app_id, key) DO NOTHING
RETURNING created_at`

	readIdemSQL = `
SELECT request_hash, status, response, created_at,
       created_at < now() - $3 * interval '1 microsecond' AS expired,
       created_at < now() - $4 * interval '1 microsecond' AS stale
  FROM api_idempotency WHERE app_id = $1 AND key = $2`

	dropExpiredIdemSQL = `DELETE FROM api_idempotency WHERE app_id = $1 AND key = $2 AND created_at = $3`

	takeOverIdemSQL = `
UPDATE api_idempotency SET created_at = now()
 WHERE app_id = $1 AND key = $2 AND status IS NULL AND created_at = $3`

	finishIdemSQL = `UPDATE api_idempotency SET status = $3, response = $4 WHERE app_id = $1 AND key = $2`

	releaseIdemSQL = `DELETE FROM api_idempotency WHERE app_id = $1 AND key = $2 AND status IS NULL`

	pruneIdemSQL = `
DELETE FROM api_idempotency WHERE ctid = ANY (ARRAY(
  SELECT ctid FROM api_idempotency WHERE created_at < now() - $1 * interval '1 microsecond' LIMIT $2))`
)

// result is a POST's successful answer. body's "secret", if any, is never
// stored: a replay reads the endpoint's current secret from Svix.
type result struct {
	status     int
	endpointID string
	body       any
}

// stored is what api_idempotency.response holds.
type stored struct {
	EndpointID string                     `json:"endpoint_id"`
	Body       map[string]json.RawMessage `json:"body"`
}

// requestHash identifies a request's meaning (operation and validated
// body), so that a repeat with other whitespace is still the same request.
func requestHash(op string, v any) []byte {
	b, _ := json.Marshal(v) // the API's own types
	sum := sha256.Sum256(append([]byte(op+"\x00"), b...))
	return sum[:]
}

// idempotent runs fn once per (account, Idempotency-Key): the first
// request runs it and its 2xx answer is kept for IdempotencyTTL; a repeat
// with the same request gets that answer again (Idempotent-Replayed: true)
// without running fn; a repeat with another request is refused (422
// idempotency_key_reused); a repeat while the first still runs is a 409.
// A failed first request keeps nothing, so its repeat runs afresh. Without
// the header fn just runs.
//
// fn gets a Svix idempotency key derived from the account and key, so that
// a request taken over after its first runner died does not create twice
// in Svix either.
func (h *Handler) idempotent(ctx context.Context, w http.ResponseWriter, r *http.Request, app string, hash []byte,
	fn func(ctx context.Context, svixKey *string) (result, error),
) error {
	key, present := r.Header[http.CanonicalHeaderKey(IdempotencyHeader)]
	if !present {
		res, err := fn(ctx, nil)
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, res.status, res.body)
		return nil
	}
	k := key[0]
	if k == "" || len(k) > MaxIdempotencyKeyLength || len(key) > 1 || !printableASCII(k) {
		return httpapi.Invalid(http.StatusBadRequest, "invalid_idempotency_key", IdempotencyHeader,
			"Idempotency-Key must be 1 to %d printable ASCII characters.", MaxIdempotencyKeyLength)
	}
	replay, err := h.claim(ctx, app, k, hash)
	if err != nil {
		return err
	}
	if replay != nil {
		return h.replay(ctx, w, app, replay)
	}

	sum := sha256.Sum256([]byte(app + "\x00" + k))
	svixKey := "relay-api-" + hex.EncodeToString(sum[:16])
	res, err := fn(ctx, &svixKey)
	bookkeeping, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err != nil {
		if _, rerr := h.cfg.DB.Exec(bookkeeping, releaseIdemSQL, app, k); rerr != nil {
			return errors.Join(err, fmt.Errorf("release idempotency key: %w", rerr))
		}
		return err
	}
	body, err := storedBody(res)
	if err != nil {
		return err
	}
	if _, err := h.cfg.DB.Exec(bookkeeping, finishIdemSQL, app, k, res.status, body); err != nil {
		return dbError(fmt.Errorf("record idempotent answer: %w", err))
	}
	httpapi.WriteJSON(w, res.status, res.body)
	return nil
}

// claim takes the key for this request, or returns the answer to replay,
// or the error to answer.
func (h *Handler) claim(ctx context.Context, app, key string, hash []byte) (*storedAnswer, error) {
	ttl := h.cfg.IdempotencyTTL.Microseconds()
	stale := (h.cfg.RequestTimeout + 5*time.Second).Microseconds()
	for range 5 {
		var created time.Time
		err := h.cfg.DB.QueryRow(ctx, claimIdemSQL, app, key, hash).Scan(&created)
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, dbError(fmt.Errorf("claim idempotency key: %w", err))
		}
		var (
			prevHash       []byte
			status         *int
			response       []byte
			expired, isOld bool
		)
		err = h.cfg.DB.QueryRow(ctx, readIdemSQL, app, key, ttl, stale).Scan(&prevHash, &status, &response, &created, &expired, &isOld)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // released meanwhile
		}
		if err != nil {
			return nil, dbError(fmt.Errorf("read idempotency key: %w", err))
		}
		switch {
		case expired:
			if _, err := h.cfg.DB.Exec(ctx, dropExpiredIdemSQL, app, key, created); err != nil {
				return nil, dbError(fmt.Errorf("drop expired idempotency key: %w", err))
			}
			continue
		case !bytes.Equal(prevHash, hash):
			return nil, &httpapi.Error{Status: http.StatusUnprocessableEntity, Type: httpapi.TypeIdempotency, Code: "idempotency_key_reused", Param: IdempotencyHeader,
				Message: "This Idempotency-Key was used for a different request; use a new key for a new request."}
		case status != nil:
			return &storedAnswer{status: *status, response: response}, nil
		case isOld:
			// Its first request died without an answer: run it again here.
			tag, err := h.cfg.DB.Exec(ctx, takeOverIdemSQL, app, key, created)
			if err != nil {
				return nil, dbError(fmt.Errorf("take over idempotency key: %w", err))
			}
			if tag.RowsAffected() == 1 {
				return nil, nil
			}
			continue
		}
		return nil, &httpapi.Error{Status: http.StatusConflict, Type: httpapi.TypeIdempotency, Code: "idempotency_key_in_use", Param: IdempotencyHeader, RetryAfter: time.Second,
			Message: "A request with this Idempotency-Key is still being handled; retry after the number of seconds in Retry-After."}
	}
	return nil, httpapi.Unavailable(http.StatusServiceUnavailable, httpapi.TypeAPI, "idempotency_contention", time.Second, nil,
		"Could not settle the Idempotency-Key; retry after the number of seconds in Retry-After.")
}

type storedAnswer struct {
	status   int
	response []byte
}

func storedBody(res result) ([]byte, error) {
	b, err := json.Marshal(res.body)
	if err != nil {
		return nil, fmt.Errorf("encode answer: %w", err)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("encode answer: %w", err)
	}
	delete(body, "secret")
	return json.Marshal(stored{EndpointID: res.endpointID, Body: body})
}

// replay answers the stored answer again, with the endpoint's current
// signing secret read from Svix.
func (h *Handler) replay(ctx context.Context, w http.ResponseWriter, app string, a *storedAnswer) error {
	var s stored
	if err := json.Unmarshal(a.response, &s); err != nil {
		return fmt.Errorf("decode stored idempotent answer: %w", err)
	}
	secret, err := h.readSecret(ctx, app, s.EndpointID)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(secret)
	s.Body["secret"] = b
	w.Header().Set("Idempotent-Replayed", "true")
	httpapi.WriteJSON(w, a.status, s.Body)
	return nil
}

// PruneIdempotencyKeys deletes the keys older than Config.IdempotencyTTL,
// in batches, and returns how many went. `relay serve` runs it every few
// minutes; a product mounting the handler should too (an expired key is
// ignored either way, so pruning only bounds the table).
func (h *Handler) PruneIdempotencyKeys(ctx context.Context) (int64, error) {
	const batch = 1000
	var total int64
	for {
		tag, err := h.cfg.DB.Exec(ctx, pruneIdemSQL, h.cfg.IdempotencyTTL.Microseconds(), batch)
		if err != nil {
			return total, fmt.Errorf("prune idempotency keys: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < batch {
			return total, nil
		}
	}
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
