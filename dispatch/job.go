package dispatch

import (
	"encoding/json"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// DeliverArgs is the River job for one outbox row. It carries the row's
// content, copied at claim time, so a delivery needs no read of the row.
type DeliverArgs struct {
	OutboxID  int64           `json:"outbox_id" river:"unique"`
	CreatedUS int64           `json:"created_us"`                       // created_at in Unix microseconds, part of the key
	Resends   int             `json:"resends,omitempty" river:"unique"` // a forced resend is a new job
	AppID     string          `json:"app_id"`
	EventType string          `json:"event_type"`
	Data      json.RawMessage `json:"data"`

	// Ordering: the row's place among the rows of its asset, and the keys.
	OrderSeq int64  `json:"order_seq,omitempty"`
	AssetID  string `json:"asset_id,omitempty"`
	EntityID string `json:"entity_id,omitempty"`
	// HeadOfKey is set when no earlier row of the row's ordering key was
	// undelivered when the row was claimed: it is sent without looking
	// again. Unset (jobs made before it existed, rows behind another),
	// the worker checks before sending.
	HeadOfKey bool `json:"head_of_key,omitempty"`
}

// DeliverKind is the River job kind of DeliverArgs.
const DeliverKind = "outbox.deliver"

// Kind implements river.JobArgs.
func (DeliverArgs) Kind() string { return DeliverKind }

// Key returns the row's idempotency key.
func (a DeliverArgs) Key() string { return keyFromMicros(a.OutboxID, a.CreatedUS, a.Resends) }

// liveStates are the job states in which a row's job is unique: one live
// job per row, while a finished job does not stop a replay or a forced
// resend from inserting a new one.
var liveStates = []rivertype.JobState{
	rivertype.JobStateAvailable,
	rivertype.JobStatePending,
	rivertype.JobStateRetryable,
	rivertype.JobStateRunning,
	rivertype.JobStateScheduled,
}

func insertOpts(queue string) *river.InsertOpts {
	return &river.InsertOpts{
		Queue:      queue,
		UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: liveStates},
	}
}
