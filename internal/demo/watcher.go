package demo

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mediaplatform/relay/internal/msgkey"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// watcher joins deliveries with the rows they came from, prints them and
// keeps the tally in report (nil: print only).
type watcher struct {
	dev     *devSvix
	print   printer
	report  *Report
	commits map[int64]Emitted  // every row the demo committed, by id
	pending map[int64]Emitted  // committed rows not yet verified
	lostAck map[string]Receipt // processed with a lost ack, until Svix redelivers
}

func newWatcher(dev *devSvix, p printer, report *Report, expected []Emitted) *watcher {
	w := &watcher{dev: dev, print: p, report: report,
		commits: make(map[int64]Emitted), pending: make(map[int64]Emitted), lostAck: make(map[string]Receipt)}
	for _, e := range expected {
		w.commits[e.RowID], w.pending[e.RowID] = e, e
	}
	return w
}

func (w *watcher) done() bool { return len(w.pending) == 0 && len(w.lostAck) == 0 }

func (w *watcher) handle(d Delivery) {
	r := Receipt{Delivery: d}
	if m, ok := w.dev.message(d.App, d.SvixID); ok {
		r.EventID, r.IdempotencyKey = m.EventID, m.IdempotencyKey
		if id, created, _, ok := msgkey.Parse(m.EventID); ok {
			r.RowID = id
			if e, ok := w.commits[id]; ok {
				r.Latency = d.ReceivedAt.Sub(e.CommittedAt)
			} else {
				r.Latency, r.Approx = d.ReceivedAt.Sub(created), true
			}
		}
	}
	w.print.row(r)
	if w.report == nil { // serving only: nothing to check, nothing to keep
		return
	}
	w.report.Receipts = append(w.report.Receipts, r)

	switch {
	case d.Duplicate:
		delete(w.lostAck, d.SvixID)
	case d.Processed:
		if d.Fault == FaultLoseAck {
			w.lostAck[d.SvixID] = r
		}
		e, ok := w.pending[r.RowID]
		if !ok {
			return
		}
		if problem := mismatch(e, d); problem != "" {
			w.report.Mismatched = append(w.report.Mismatched, problem)
			fmt.Fprintf(w.print.w, "        ^ %s\n", problem)
			return
		}
		if d.Err == "" {
			delete(w.pending, r.RowID)
		}
	}
}

// mismatch compares a delivery with the row it came from, by JSON value.
func mismatch(e Emitted, d Delivery) string {
	if d.Type != string(e.Type) {
		return fmt.Sprintf("row %d was written as %s but delivered as %s", e.RowID, e.Type, d.Type)
	}
	var want, got any
	if decodeNumbers(e.Data, &want) != nil || decodeNumbers(d.Data, &got) != nil || !reflect.DeepEqual(want, got) {
		return fmt.Sprintf("row %d: data written %s, delivered %s", e.RowID, e.Data, d.Data)
	}
	return ""
}

func decodeNumbers(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

// unrouted tells about a message of an app without an endpoint.
func (w *watcher) unrouted(m svixfake.Message) {
	row := "a message"
	if id, _, _, ok := msgkey.Parse(m.EventID); ok {
		row = fmt.Sprintf("row %d", id)
	}
	fmt.Fprintf(w.print.w, "  note: %s (%s) was accepted by Svix as %s, but app %q has no endpoint, so it is delivered nowhere; use app %s\n",
		row, m.EventType, m.ID, cmp.Or(m.AppUID, m.AppID), strings.Join(Apps, " or "))
}

// fail records the missing rows, prints the failing summary and returns
// the error.
func (w *watcher) fail(when string) error {
	var missing []string
	for _, id := range slices.Sorted(maps.Keys(w.pending)) {
		e := w.pending[id]
		w.report.Missing = append(w.report.Missing, e)
		missing = append(missing, fmt.Sprintf("row %d (%s, %s)", id, e.Type, e.App))
	}
	for id := range w.lostAck {
		missing = append(missing, "the redelivery of "+id)
	}
	n := len(w.commits)
	msg := fmt.Sprintf("%d of %d events verified %s; missing: %s", n-len(w.pending), n, when, strings.Join(missing, ", "))
	if len(w.report.Mismatched) > 0 {
		// A delivery that arrived but differs from its row is the cause,
		// not a lost one.
		msg += "; delivered but different from the row: " + strings.Join(w.report.Mismatched, "; ")
	}
	fmt.Fprintf(w.print.w, "\nFAIL  %s\n", msg)
	return errors.New(msg)
}

// summary is the closing line of a successful run.
func (w *watcher) summary() string {
	r := w.report
	retried, duplicates := 0, 0
	for _, rc := range r.Receipts {
		if rc.Fault == FaultRefuse {
			retried++
		}
		if rc.Duplicate {
			duplicates++
		}
	}
	var pgErr *pgconn.PgError
	refused := "refused"
	if errors.As(r.Refused, &pgErr) {
		refused += " (" + pgErr.ConstraintName + ")"
	}
	n := len(r.Expected)
	return fmt.Sprintf("OK  %d of %d events delivered once, signed and verified, %s after the first commit "+
		"(%d retried after a 503, %d duplicate delivery ignored); all %d outbox rows marked delivered with their Svix message ids; "+
		"rolled-back row %d never delivered; invalid insert %s.",
		n, n, r.Elapsed.Round(time.Millisecond), retried, duplicates, n, r.RolledBack.RowID, refused)
}
