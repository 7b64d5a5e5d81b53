package svixfake

import (
	"context"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Reply is a scripted answer returned by an Interceptor.
type Reply struct {
	// Status to answer; 0 means 500.
	Status int
	// Body to answer; nil means a Svix-style {"code","detail"} body
	// matching Status (rate_limited for 429, server_error for 5xx, ...).
	Body []byte
	// Header is added to the answer (for example Retry-After).
	Header http.Header
	// Drop closes the connection without answering; the other fields are
	// ignored.
	Drop bool
}

// Interceptor sees every request first, before any other fault and before
// authentication, and answers it itself by returning true. It is called
// concurrently from request goroutines without any lock held, so it must be
// safe for concurrent use; r must not be modified or retained.
type Interceptor func(r *Request) (Reply, bool)

// faults holds the runtime fault configuration. Request goroutines hold mu
// only to read it (and to take rate-limit tokens), never while sleeping.
type faults struct {
	mu sync.Mutex

	latency, jitter time.Duration

	failFrac   float64
	failStatus int
	dropFrac   float64

	outageUntil time.Time
	outageDrop  bool

	throttleN     int
	throttleAfter time.Duration

	ratePerSec float64
	tokens     float64
	tokensAt   time.Time

	failApps    map[string]reply
	interceptor Interceptor
}

// SetLatency delays every answer to a message create by base plus a
// uniformly random extra in [0, jitter). The message is stored before the
// delay, so a client that gives up during it has had its message accepted
// anyway: the ambiguous timeout an idempotent sender must survive. Zero
// disables it.
func (s *Server) SetLatency(base, jitter time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.latency, s.faults.jitter = max(base, 0), max(jitter, 0)
}

// SetFailureRate answers the fraction frac (0..1) of API requests (health
// excepted) with status (0 means 500) and {"code":"server_error"} before
// authentication, like a failing load balancer. Nothing is stored.
func (s *Server) SetFailureRate(frac float64, status int) {
	if status == 0 {
		status = http.StatusInternalServerError
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.failFrac, s.faults.failStatus = clampFrac(frac), status
}

// SetDropConnections closes the connection of the fraction frac (0..1) of
// API requests (health excepted) without answering. The Svix client then
// returns a *url.Error. Nothing is stored.
func (s *Server) SetDropConnections(frac float64) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.dropFrac = clampFrac(frac)
}

// SetRateLimit limits message creates to perSecond per second across all
// tokens and apps (a token bucket holding one second's worth, full when
// set). Creates beyond it are answered 429 {"code":"rate_limited"} with a
// Retry-After header in whole seconds. Zero or less disables it. The bucket
// follows Config.Now.
func (s *Server) SetRateLimit(perSecond int) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.ratePerSec = float64(max(perSecond, 0))
	s.faults.tokens = s.faults.ratePerSec
	s.faults.tokensAt = s.now()
}

// Throttle answers the next n authenticated API requests 429
// {"code":"rate_limited"} with Retry-After set to retryAfter (whole
// seconds, rounded up, at least 1). It replaces any pending throttle.
func (s *Server) Throttle(n int, retryAfter time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.throttleN, s.faults.throttleAfter = max(n, 0), retryAfter
}

// Outage answers every request, health included, with 503
// {"code":"server_error"} (or drops the connection when drop is set) until
// the given time by Config.Now. The zero time ends an outage.
func (s *Server) Outage(until time.Time, drop bool) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.outageUntil, s.faults.outageDrop = until, drop
}

// FailApp answers every authenticated request under /app/{app} with status
// and {"code","detail"}, matching app against the path value and, once the
// app exists, its id and uid. Status 0 removes the rule.
func (s *Server) FailApp(app string, status int, code, detail string) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	if status == 0 {
		delete(s.faults.failApps, app)
		return
	}
	if s.faults.failApps == nil {
		s.faults.failApps = make(map[string]reply)
	}
	s.faults.failApps[app] = errorReply(status, code, detail)
}

// SetInterceptor installs fn (nil removes it). See Interceptor.
func (s *Server) SetInterceptor(fn Interceptor) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.interceptor = fn
}

// ResetFaults removes every injected fault.
func (s *Server) ResetFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.latency, s.faults.jitter = 0, 0
	s.faults.failFrac, s.faults.dropFrac = 0, 0
	s.faults.outageUntil, s.faults.outageDrop = time.Time{}, false
	s.faults.throttleN = 0
	s.faults.ratePerSec = 0
	s.faults.failApps = nil
	s.faults.interceptor = nil
}

func (f *faults) hasInterceptor() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.interceptor != nil
}

func clampFrac(f float64) float64 { return min(max(f, 0), 1) }

// injectBeforeAuth applies the interceptor and the infrastructure faults
// (outage, dropped connections, 5xx), which precede authentication.
func (s *Server) injectBeforeAuth(c *call) (reply, bool) {
	f := &s.faults
	f.mu.Lock()
	ic := f.interceptor
	f.mu.Unlock()
	if ic != nil {
		if r, ok := ic(c.req); ok {
			c.req.Fault = FaultInterceptor
			return r.toReply(), true
		}
	}

	health := c.route.kind == routeHealth
	now := s.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case now.Before(f.outageUntil):
		c.req.Fault = FaultOutage
		if f.outageDrop {
			return reply{drop: true}, true
		}
		return errorReply(http.StatusServiceUnavailable, "server_error", "Service unavailable (svixfake outage)."), true
	case health:
		return reply{}, false
	case f.dropFrac > 0 && mrand.Float64() < f.dropFrac:
		c.req.Fault = FaultDrop
		return reply{drop: true}, true
	case f.failFrac > 0 && mrand.Float64() < f.failFrac:
		c.req.Fault = FaultFailure
		return errorReply(f.failStatus, "server_error", "Internal Server Error (svixfake injected failure)."), true
	}
	return reply{}, false
}

// injectAfterAuth applies throttling, the message rate limit and FailApp.
func (s *Server) injectAfterAuth(c *call) (reply, bool) {
	f := &s.faults
	f.mu.Lock()
	if f.throttleN > 0 {
		f.throttleN--
		after := f.throttleAfter
		f.mu.Unlock()
		c.req.Fault = FaultThrottle
		return rateLimited(after), true
	}
	if f.ratePerSec > 0 && c.route.kind == routeMsgs && c.r.Method == http.MethodPost {
		now := s.now()
		if elapsed := now.Sub(f.tokensAt); elapsed > 0 {
			f.tokens = min(f.ratePerSec, f.tokens+elapsed.Seconds()*f.ratePerSec)
			f.tokensAt = now
		}
		if f.tokens < 1 {
			wait := time.Duration((1 - f.tokens) / f.ratePerSec * float64(time.Second))
			f.mu.Unlock()
			c.req.Fault = FaultRateLimit
			return rateLimited(wait), true
		}
		f.tokens--
	}
	hasRules := len(f.failApps) > 0
	f.mu.Unlock()
	if !hasRules || c.route.app == "" {
		return reply{}, false
	}
	// Resolve the app without holding faults.mu: the two locks never nest.
	keys := [3]string{c.route.app}
	s.store.mu.Lock()
	if a := s.store.findApp(c.route.app); a != nil {
		keys[1], keys[2] = a.out.Id, deref(a.out.Uid)
	}
	s.store.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		if rep, ok := f.failApps[k]; ok && k != "" {
			c.req.Fault = FaultApp
			return rep, true
		}
	}
	return reply{}, false
}

func rateLimited(after time.Duration) reply {
	rep := errorReply(http.StatusTooManyRequests, "rate_limited", "Too many requests, slow down.")
	rep.header = http.Header{"Retry-After": []string{retryAfterSeconds(after)}}
	return rep
}

// sleepLatency waits out the configured latency, cut short when the client
// goes away or the server closes.
func (s *Server) sleepLatency(ctx context.Context) {
	s.faults.mu.Lock()
	d := s.faults.latency
	if j := s.faults.jitter; j > 0 {
		d += mrand.N(j)
	}
	s.faults.mu.Unlock()
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
}

func (r Reply) toReply() reply {
	if r.Drop {
		return reply{drop: true}
	}
	status := r.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	body := r.Body
	if body == nil {
		body = errorBody(defaultCode(status), http.StatusText(status))
	}
	return reply{status: status, body: body, header: r.Header.Clone()}
}

func defaultCode(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "rate_limited"
	case status == http.StatusNotFound:
		return "not_found"
	case status == http.StatusConflict:
		return "conflict"
	case status == http.StatusUnauthorized:
		return "authentication_failed"
	case status == http.StatusRequestEntityTooLarge:
		return "payload_too_large"
	case status >= 500:
		return "server_error"
	default:
		return "generic_error"
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
