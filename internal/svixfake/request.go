package svixfake

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Fault names the injected fault that answered a request; empty when the
// API itself answered.
type Fault string

// Faults, in the order they are checked.
const (
	FaultInterceptor Fault = "interceptor" // Server.SetInterceptor answered
	FaultOutage      Fault = "outage"      // Server.Outage window
	FaultDrop        Fault = "drop"        // Server.SetDropConnections
	FaultFailure     Fault = "failure"     // Server.SetFailureRate
	FaultThrottle    Fault = "throttle"    // Server.Throttle
	FaultRateLimit   Fault = "rate_limit"  // Server.SetRateLimit
	FaultApp         Fault = "fail_app"    // Server.FailApp
)

// RedactedAuthorization replaces the Authorization header value in
// recorded requests.
const RedactedAuthorization = "[REDACTED]"

// Request is one HTTP request as the fake saw and answered it. Slices and
// maps are shared with the fake's log: treat them as read-only.
type Request struct {
	// Seq numbers requests in arrival order, from 1.
	Seq int64
	// Received is when the request arrived (Config.Now).
	Received time.Time
	Method   string
	Path     string
	RawQuery string
	// Header is a copy of the request headers with Authorization replaced
	// by RedactedAuthorization. It is nil when the log is disabled
	// (Config.MaxRecordedRequests < 0) and no Interceptor is installed.
	Header http.Header
	// IdempotencyKey is the idempotency-key header, if any.
	IdempotencyKey string
	// Body is the raw request body, cut at Config.MaxBodyBytes when
	// Truncated is set.
	Body      []byte
	Truncated bool

	// AppID is the {app_id} path value (an id or a uid) on /app/{app_id}/...
	AppID string
	// EventType and EventID are read from the body of a message create,
	// when it parses.
	EventType string
	EventID   string

	// Status is the status answered; 0 when the connection was dropped.
	Status  int
	Dropped bool
	// Fault is the injected fault that answered, if any.
	Fault Fault
	// Replayed is set when the answer came from the idempotency store.
	Replayed bool
	// MsgID is the message id answered by a message create or get.
	MsgID string
}

// Message is an accepted message, as stored.
type Message struct {
	ID        string
	AppID     string // the app's id (app_...)
	AppUID    string // the app's uid, if it has one
	EventType string
	EventID   string
	// Payload is the payload value exactly as received, byte for byte, so
	// big integers and key order can be checked exactly.
	Payload   json.RawMessage
	Channels  []string
	Tags      []string
	Timestamp time.Time
	// IdempotencyKey is the key of the request that created the message.
	IdempotencyKey string
}

// Attempt is one DevMode delivery attempt.
type Attempt struct {
	MsgID      string
	EndpointID string
	URL        string
	// Attempt counts from 1 for each (message, endpoint).
	Attempt int
	// Status is the receiver's status; 0 when no response came back.
	Status int
	// Err describes a transport failure or timeout.
	Err  string
	Time time.Time
}

// Success reports whether the attempt got a 2xx.
func (a Attempt) Success() bool { return a.Status >= 200 && a.Status <= 299 }

// requestLog is a bounded ring of recorded requests plus status counters.
type requestLog struct {
	max int // < 0: keep none

	mu    sync.Mutex
	ring  []Request
	start int // index of the oldest entry once the ring is full

	seq    atomic.Int64
	counts [600]atomic.Int64
	other  atomic.Int64 // statuses outside [0, 600)
}

func (l *requestLog) nextSeq() int64 { return l.seq.Add(1) }

func (l *requestLog) add(r *Request) {
	if r.Status >= 0 && r.Status < len(l.counts) {
		l.counts[r.Status].Add(1)
	} else {
		l.other.Add(1)
	}
	if l.max < 0 {
		return
	}
	l.mu.Lock()
	if len(l.ring) < l.max {
		l.ring = append(l.ring, *r)
	} else {
		l.ring[l.start] = *r
		l.start = (l.start + 1) % l.max
	}
	l.mu.Unlock()
}

// notifier wakes WaitFor callers on every state change. The channel is
// created only while someone waits, so a busy server without waiters
// allocates nothing for it.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) broadcast() {
	n.mu.Lock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
	n.mu.Unlock()
}

// Requests returns the recorded requests, oldest first, including faulted
// and dropped ones. A request is recorded once it has been answered.
func (s *Server) Requests() []Request {
	l := &s.reqs
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Request, 0, len(l.ring))
	out = append(out, l.ring[l.start:]...)
	out = append(out, l.ring[:l.start]...)
	return out
}

// RequestCount returns how many requests have been answered or dropped,
// whether or not the log kept them.
func (s *Server) RequestCount() int64 {
	var n int64
	for i := range s.reqs.counts {
		n += s.reqs.counts[i].Load()
	}
	return n + s.reqs.other.Load()
}

// StatusCount returns how many requests were answered with status (0 for
// dropped connections).
func (s *Server) StatusCount(status int) int64 {
	if status < 0 || status >= len(s.reqs.counts) {
		return 0
	}
	return s.reqs.counts[status].Load()
}

// StatusCounts returns the number of answers per status (0: dropped).
func (s *Server) StatusCounts() map[int]int64 {
	out := make(map[int]int64)
	for i := range s.reqs.counts {
		if n := s.reqs.counts[i].Load(); n > 0 {
			out[i] = n
		}
	}
	return out
}

// WaitFor blocks until cond reports true or ctx ends, re-evaluating cond
// after every recorded request, accepted message and delivery attempt. cond
// runs without any lock held, so it may call any accessor.
func (s *Server) WaitFor(ctx context.Context, cond func(*Server) bool) error {
	for {
		// Take the channel before evaluating cond so a change between the
		// two is not missed.
		changed := s.notify.wait()
		if cond(s) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("svixfake: wait for condition: %w", context.Cause(ctx))
		}
	}
}

// WaitForMessages waits until at least n messages have been accepted in
// total.
func (s *Server) WaitForMessages(ctx context.Context, n int) error {
	return s.WaitFor(ctx, func(s *Server) bool { return s.MessageCount() >= n })
}
