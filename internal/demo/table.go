package demo

import (
	"fmt"
	"io"
	"strconv"
	"time"
)

// rowFormat lays out the delivery table with fixed widths, so rows printed
// one at a time, as deliveries arrive, line up.
const rowFormat = "%6s  %-21s  %-8s  %-24s  %-31s  %8s  %3s  %s\n"

// Receipt is a delivery joined with what the demo knows about it: the
// outbox row and key read back from the message's eventId, and the latency
// from the row's commit.
type Receipt struct {
	Delivery
	// RowID is the outbox row id; 0 when the message did not come from an
	// outbox row (its eventId is not an outbox key).
	RowID int64
	// EventID is the message's eventId (the row's key); IdempotencyKey is
	// the idempotency-key header the relay sent. The relay uses the same
	// value for both.
	EventID, IdempotencyKey string
	// Latency runs from the row's commit to this delivery's arrival. When
	// the demo did not commit the row itself, it runs from the row's
	// created_at (its INSERT) instead and Approx is set.
	Latency time.Duration
	Approx  bool
}

// printer writes the table.
type printer struct{ w io.Writer }

func (p printer) header() {
	fmt.Fprintf(p.w, rowFormat, "ROW", "EVENT TYPE", "APP", "IDEMPOTENCY KEY", "SVIX MESSAGE ID", "LATENCY", "TRY", "SIGNATURE")
}

func (p printer) row(r Receipt) {
	row, latency := "?", "?"
	if r.RowID != 0 {
		row = strconv.FormatInt(r.RowID, 10)
	}
	if r.Latency > 0 || r.RowID != 0 {
		latency = formatLatency(r.Latency)
		if r.Approx {
			latency = "~" + latency
		}
	}
	fmt.Fprintf(p.w, rowFormat, row, orDash(r.Type), r.App, orDash(r.IdempotencyKey), orDash(r.SvixID),
		latency, strconv.Itoa(r.Try), signatureNote(r.Delivery))
}

// signatureNote is the last column: the verdict and what the receiver did.
func signatureNote(d Delivery) string {
	if !d.Verified {
		return "NOT VERIFIED: " + d.Err
	}
	note := "verified"
	switch {
	case d.Duplicate:
		note += "; duplicate svix-id: acknowledged, not processed again"
	case d.Fault == FaultRefuse:
		note += fmt.Sprintf("; answered %d (simulated outage), Svix retries", d.Status)
	case d.Fault == FaultLoseAck:
		note += fmt.Sprintf("; processed, answered %d (simulated lost ack), Svix retries", d.Status)
	}
	if d.Err != "" {
		note += "; " + d.Err
	}
	return note
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// formatLatency prints whole milliseconds under 10 s, tenths of a second
// above.
func formatLatency(d time.Duration) string {
	d = max(d, 0)
	if d < 10*time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
}
