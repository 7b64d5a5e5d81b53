package live

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/httpapi"
)

// maxWriteBatch is how many queued events one flush carries at most.
const maxWriteBatch = 64

// serveStream is GET /v1/live: authenticate, validate, join the hub,
// replay from the cursor, then stream live until the client leaves, the
// token expires, the stream falls behind or the server shuts down.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request) error {
	p, err := h.authenticate(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if err := h.waitReady(ctx); err != nil {
		return err
	}
	q := r.URL.Query()
	f, err := h.parseFilter(q)
	if err != nil {
		return err
	}
	resume, hasCursor, err := parseResume(r, q)
	if err != nil {
		return err
	}

	sub, joined, err := h.hub.subscribe(p.AppID, f)
	switch {
	case errors.Is(err, errTooManyForApp):
		return &httpapi.Error{Status: http.StatusTooManyRequests, Type: httpapi.TypeRateLimit, Code: "too_many_streams", RetryAfter: 5 * time.Second,
			Message: "This account has " + strconv.Itoa(h.cfg.MaxStreamsPerApp) + " live streams open, the most allowed; close one or retry later."}
	case errors.Is(err, errClosing):
		return unavailable("shutting_down", "The server is shutting down; reconnect shortly.")
	case err != nil:
		return err
	}
	defer h.hub.unsubscribe(sub)

	// Everything after joined arrives on sub.ch; what the client missed
	// up to it comes from the database.
	from := joined
	var replayed []*event
	reset := ""
	if hasCursor {
		replayed, reset, err = h.hub.replay(ctx, p.AppID, f, resume, joined)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return httpapi.Unavailable(http.StatusServiceUnavailable, httpapi.TypeAPI, "replay_unavailable", 2*time.Second, err,
				"Could not read the events after your cursor; reconnect shortly.")
		}
		if reset == "" && resume.seq > joined {
			from = resume.seq // this process's reader is a moment behind the cursor
		}
	}

	rc := http.NewResponseController(w)
	// A stream outlives the server's read timeout (which would otherwise
	// cancel it) and its write timeout (replaced by one per write).
	_ = rc.SetReadDeadline(time.Time{})
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	s := &streamWriter{w: w, rc: rc, timeout: h.cfg.WriteTimeout}
	s.buf = append(s.buf, "retry: "...)
	s.buf = strconv.AppendInt(s.buf, h.cfg.Retry.Milliseconds(), 10)
	s.buf = append(s.buf, '\n')
	here := cursor{epoch: h.hub.epoch, seq: from}
	if reset != "" {
		s.buf = append(s.buf, "id: "+here.String()+"\nevent: reset\ndata: {\"type\":\"reset\",\"data\":{\"reason\":\""+reset+"\"}}\n\n"...)
	} else {
		for _, e := range replayed {
			s.buf = append(s.buf, e.frame...)
		}
		// An id without data moves EventSource's Last-Event-ID to where
		// this stream starts, so a reconnect before the next event resumes
		// here and not "now".
		s.buf = append(s.buf, "id: "+here.String()+"\n\n"...)
	}
	sent := len(replayed)
	endReason := "client_closed"
	defer func() {
		h.log.Info("live stream ended", zap.String("app_id", p.AppID), zap.String("reason", endReason),
			zap.Int("events", sent), zap.String("request_id", httpapi.RequestIDFrom(ctx)), zap.Bool("resumed", hasCursor), zap.String("reset", reset))
	}()
	if err := s.flush(); err != nil {
		endReason = "write_failed"
		return nil
	}

	heartbeat := time.NewTicker(h.cfg.Heartbeat)
	defer heartbeat.Stop()
	expiry := time.NewTimer(time.Until(p.Expires))
	defer expiry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.hub.closing:
			endReason = "shutdown"
			return nil
		case <-sub.gone:
			endReason = "too_slow"
			return nil
		case <-expiry.C:
			endReason = "token_expired"
			return nil
		case <-heartbeat.C:
			s.buf = append(s.buf, ": ping\n\n"...)
		case e := <-sub.ch:
			sent += s.add(e, from)
		more:
			for range maxWriteBatch {
				select {
				case e = <-sub.ch:
					sent += s.add(e, from)
				default:
					break more
				}
			}
		}
		if err := s.flush(); err != nil {
			endReason = "write_failed"
			return nil
		}
	}
}

// streamWriter writes frames with a deadline per write, so a client that
// stops reading is cut off while an idle one is never timed out.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte
}

// add queues e's frame unless the stream already has it (from: the
// position it was replayed up to) and returns how many it queued.
func (s *streamWriter) add(e *event, from int64) int {
	if e.seq <= from {
		return 0
	}
	s.buf = append(s.buf, e.frame...)
	return 1
}

func (s *streamWriter) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	_, err := s.w.Write(s.buf)
	if err == nil {
		err = s.rc.Flush()
	}
	if cap(s.buf) > 64<<10 {
		s.buf = nil // do not keep a large replay's buffer for the stream's life
	} else {
		s.buf = s.buf[:0]
	}
	return err
}

// parseFilter reads ?types=a,b (each in the catalog) and ?asset_id=.
func (h *Handler) parseFilter(q url.Values) (filter, error) {
	var f filter
	if vs, ok := q["types"]; ok {
		seen := map[string]bool{}
		for _, v := range vs {
			for _, t := range strings.Split(v, ",") {
				t = strings.TrimSpace(t)
				if t == "" {
					return f, httpapi.Invalid(http.StatusBadRequest, "invalid_types", "types", "types must be a comma-separated list of event types, e.g. types=asset.ready,render.completed; it has an empty entry.")
				}
				if !h.hub.types[t] {
					return f, httpapi.Invalid(http.StatusBadRequest, "unknown_event_type", "types", "types names %q, which is not an event type; known types: %s.", truncate(t, 64), strings.Join(h.knownTypes(), ", "))
				}
				if !seen[t] {
					seen[t] = true
					f.types = append(f.types, t)
				}
			}
		}
	}
	if vs, ok := q["asset_id"]; ok {
		if len(vs) != 1 || vs[0] == "" || utf8.RuneCountInString(vs[0]) > 256 {
			return f, httpapi.Invalid(http.StatusBadRequest, "invalid_asset_id", "asset_id", "asset_id must be given once, 1 to 256 characters long.")
		}
		f.assetID = vs[0]
	}
	return f, nil
}

func (h *Handler) knownTypes() []string {
	out := make([]string, 0, len(h.hub.types))
	for t := range h.hub.types {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// parseResume reads the cursor from Last-Event-ID (EventSource sends it
// when it reconnects) or else ?last_event_id= (a page opening a new
// EventSource). The header wins: it is newer than the URL the page opened.
func parseResume(r *http.Request, q url.Values) (cursor, bool, error) {
	raw, param := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if raw == "" {
		raw, param = q.Get("last_event_id"), "last_event_id"
	}
	if raw == "" {
		return cursor{}, false, nil
	}
	c, err := parseCursor(raw)
	if err != nil {
		return cursor{}, false, httpapi.Invalid(http.StatusBadRequest, "invalid_cursor", param,
			"%s %q is not a cursor of this stream: send back an event's id unchanged.", param, truncate(raw, 64))
	}
	return c, true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
