package dispatch

import (
	"strconv"
	"time"
)

// Key is the idempotency key and eventId of an outbox row's message:
// "ob_<id>_<created_at in Unix microseconds>", with "_r<n>" appended for the
// n-th forced resend. It is stable for the row across retries, crashes and
// replicas, and differs for a row that reuses an id (after a restore from
// backup or a table rebuild), which a key of the bare id would not.
func Key(id int64, createdAt time.Time, resends int) string {
	return keyFromMicros(id, createdAt.UnixMicro(), resends)
}

func keyFromMicros(id, createdMicros int64, resends int) string {
	b := make([]byte, 0, 48)
	b = append(b, "ob_"...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, '_')
	b = strconv.AppendInt(b, createdMicros, 10)
	if resends > 0 {
		b = append(b, "_r"...)
		b = strconv.AppendInt(b, int64(resends), 10)
	}
	return string(b)
}
