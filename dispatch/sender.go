package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Message is one outbox row on its way to Svix.
type Message struct {
	AppID     string
	EventType string
	Data      json.RawMessage // the row's data, delivered as the payload's "data"
	Key       string          // idempotency key and eventId
}

// Sender hands a message to Svix and returns the Svix message id. Its errors
// are classified with the types below; any other error is transient.
type Sender interface {
	Send(ctx context.Context, msg Message) (Sent, error)
	// Lookup finds the message Svix holds for msg's eventId (msg.Key);
	// a zero Sent and no error when Svix has none.
	Lookup(ctx context.Context, msg Message) (Sent, error)
	// CheckAuth makes a cheap authenticated call; an *AuthError means the
	// token is rejected.
	CheckAuth(ctx context.Context) error
}

// Sent is an accepted message.
type Sent struct {
	MessageID string
	// Duplicate is true when Svix already had the message (409 on the
	// eventId) and the id was looked up.
	Duplicate bool
}

// PermanentError is a refusal that retrying will not change (400, 404, 413,
// 422, ...). The row is marked failed until it is replayed.
type PermanentError struct {
	Status int
	Code   string
	Detail string
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("svix refused the message: %d %s: %s", e.Status, e.Code, e.Detail)
}

// RateLimitedError is a 429. RetryAfter is Svix's Retry-After (0 when absent).
type RateLimitedError struct {
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("svix rate limited the request (retry after %s)", e.RetryAfter)
}

// AuthError is a 401 or 403: the relay's token is wrong, not the row.
type AuthError struct {
	Status int
	Detail string
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("svix rejected the auth token: %d: %s", e.Status, e.Detail)
}

// TransientError is a failure worth retrying: 5xx, 408, a timeout or a
// network error.
type TransientError struct {
	Status int // 0 for network errors and timeouts
	Err    error
}

func (e *TransientError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("svix answered %d: %v", e.Status, e.Err)
	}
	return fmt.Sprintf("svix request failed: %v", e.Err)
}

func (e *TransientError) Unwrap() error { return e.Err }
