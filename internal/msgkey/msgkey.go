// Package msgkey formats and parses the idempotency key of an outbox row's
// Svix message, which is also the message's eventId. It depends on nothing
// but the standard library, so the packages that only show or look up keys
// (status, replay, the demo) need not import the dispatcher.
package msgkey

import (
	"strconv"
	"strings"
	"time"
)

// Format returns the idempotency key and eventId of an outbox row's message:
// "ob_<id>_<created_at in Unix microseconds>", with "_r<n>" appended for the
// n-th forced resend. It is stable for the row across retries, crashes and
// replicas, and differs for a row that reuses an id (after a restore from
// backup or a table rebuild), which a key of the bare id would not.
func Format(id int64, createdAt time.Time, resends int) string {
	return FormatMicros(id, createdAt.UnixMicro(), resends)
}

// Parse reads a key made by Format back into the row's id, created_at and
// resend count; ok is false for anything else.
func Parse(key string) (id int64, createdAt time.Time, resends int, ok bool) {
	rest, found := strings.CutPrefix(key, "ob_")
	if !found {
		return 0, time.Time{}, 0, false
	}
	parts := strings.Split(rest, "_")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, time.Time{}, 0, false
	}
	id, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, time.Time{}, 0, false
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return 0, time.Time{}, 0, false
	}
	if len(parts) == 3 {
		n, found := strings.CutPrefix(parts[2], "r")
		r, err := strconv.Atoi(n)
		if !found || err != nil || r <= 0 {
			return 0, time.Time{}, 0, false
		}
		resends = r
	}
	return id, time.UnixMicro(us), resends, true
}

// FormatMicros is Format with created_at given in Unix microseconds.
func FormatMicros(id, createdMicros int64, resends int) string {
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
