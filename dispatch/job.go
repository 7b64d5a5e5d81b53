package dispatch

import (
	"encoding/json"
	"fmt"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/mediaplatform/relay/internal/msgkey"
)

// BatchArgs is the River job that delivers a batch of outbox rows: it
// carries their ids only (the rows are read when the job runs, so no
// payload is copied into river_job, River UI or the WAL twice). A job acts
// only on the rows whose job_id is its own id and that have not ended, so
// a row handed to another job meanwhile is left alone.
//
// PartitionFromUS and PartitionToUS bound the rows' partition_at (Unix
// microseconds, both inclusive), so the job's lookups by id prune the
// other partitions of the outbox (see partSpan). Jobs made before they
// existed have neither and look in every partition.
type BatchArgs struct {
	IDs             []int64 `json:"ids"`
	PartitionFromUS *int64  `json:"part_from_us,omitempty"`
	PartitionToUS   *int64  `json:"part_to_us,omitempty"`
}

// BatchKind is the River job kind of BatchArgs.
const BatchKind = "outbox.deliver_batch"

// Kind implements river.JobArgs.
func (BatchArgs) Kind() string { return BatchKind }

// DeliverArgs is the River job for one outbox row made by relays before
// batches; such a job hands its row back to be claimed again. It carried
// the row's content, copied at claim time.
//
// In river_job.args only the fields that identify the row (outbox_id,
// created_us, resends) are JSON fields; the rest travels packed in one
// string, "row" (see MarshalJSON).
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

// deliverArgsJSON is DeliverArgs as stored in river_job.args.
//
// River indexes args with GIN (jsonb_ops): one index entry per key and per
// scalar value, written again for every version of the job's row (insert,
// fetch, completion). The row's content is therefore packed into one
// string, so a job's args make a handful of index entries, not some
// thirty. Args with the row's fields at the top level (unpacked) also
// decode.
type deliverArgsJSON struct {
	OutboxID  int64  `json:"outbox_id"`
	CreatedUS int64  `json:"created_us"`
	Resends   int    `json:"resends,omitempty"`
	Row       string `json:"row,omitempty"` // packedRow as JSON text

	packedRow // args with the row's fields at the top level
}

// packedRow is the part of DeliverArgs packed into deliverArgsJSON.Row.
type packedRow struct {
	AppID     string          `json:"app_id,omitempty"`
	EventType string          `json:"event_type,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	OrderSeq  int64           `json:"order_seq,omitempty"`
	AssetID   string          `json:"asset_id,omitempty"`
	EntityID  string          `json:"entity_id,omitempty"`
	HeadOfKey bool            `json:"head_of_key,omitempty"`
}

// MarshalJSON encodes the job's args: the row's identity as fields, its
// content packed into "row".
func (a DeliverArgs) MarshalJSON() ([]byte, error) {
	row, err := json.Marshal(packedRow{AppID: a.AppID, EventType: a.EventType, Data: a.Data,
		OrderSeq: a.OrderSeq, AssetID: a.AssetID, EntityID: a.EntityID, HeadOfKey: a.HeadOfKey})
	if err != nil {
		return nil, err
	}
	return json.Marshal(struct {
		OutboxID  int64  `json:"outbox_id"`
		CreatedUS int64  `json:"created_us"`
		Resends   int    `json:"resends,omitempty"`
		Row       string `json:"row"`
	}{a.OutboxID, a.CreatedUS, a.Resends, string(row)})
}

// UnmarshalJSON decodes what MarshalJSON wrote, and the args of jobs
// written before the packing.
func (a *DeliverArgs) UnmarshalJSON(b []byte) error {
	var j deliverArgsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.Row != "" {
		if err := json.Unmarshal([]byte(j.Row), &j.packedRow); err != nil {
			return fmt.Errorf("decode packed row of outbox row %d: %w", j.OutboxID, err)
		}
	}
	p := j.packedRow
	*a = DeliverArgs{OutboxID: j.OutboxID, CreatedUS: j.CreatedUS, Resends: j.Resends, AppID: p.AppID, EventType: p.EventType,
		Data: p.Data, OrderSeq: p.OrderSeq, AssetID: p.AssetID, EntityID: p.EntityID, HeadOfKey: p.HeadOfKey}
	return nil
}

// DeliverKind is the River job kind of DeliverArgs.
const DeliverKind = "outbox.deliver"

// Kind implements river.JobArgs.
func (DeliverArgs) Kind() string { return DeliverKind }

// Key returns the row's idempotency key.
func (a DeliverArgs) Key() string { return msgkey.FormatMicros(a.OutboxID, a.CreatedUS, a.Resends) }

func batchInsertOpts(queue string) *river.InsertOpts {
	return &river.InsertOpts{Queue: queue}
}

// liveStates are the states of a job that is not finished.
var liveStates = []rivertype.JobState{
	rivertype.JobStateAvailable,
	rivertype.JobStatePending,
	rivertype.JobStateRetryable,
	rivertype.JobStateRunning,
	rivertype.JobStateScheduled,
}
