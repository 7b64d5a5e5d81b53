package svixfake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Server is an in-process fake of the Svix HTTP API. Create it with New,
// serve it with Start (or mount Handler) and always Close it. All methods
// are safe for concurrent use, including while serving.
type Server struct {
	cfg    Config
	log    *zap.Logger
	tokens map[string]bool // true: accepted; false: forbidden

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	closeMu  sync.RWMutex
	closed   bool
	httpSrv  *http.Server
	ln       net.Listener
	served   chan struct{}  // closed when httpSrv.Serve returns
	inflight sync.WaitGroup // handlers and deliveries

	store      store
	idem       idemStore
	faults     faults
	reqs       requestLog
	notify     notifier
	deliveries deliveryLog
	client     *http.Client
	ownClient  bool
}

// New returns a Server for cfg, not yet listening, or the first
// configuration error.
func New(cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tokens := make(map[string]bool, len(cfg.Tokens)+len(cfg.ForbiddenTokens))
	for _, t := range cfg.Tokens {
		tokens[t] = true
	}
	for _, t := range cfg.ForbiddenTokens {
		tokens[t] = false
	}
	client, own := cfg.DeliveryClient, false
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		client, own = &http.Client{Transport: tr}, true
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.Named("svixfake"),
		tokens:    tokens,
		ctx:       ctx,
		cancel:    cancel,
		client:    client,
		ownClient: own,
		reqs:      requestLog{max: cfg.MaxRecordedRequests},
		store:     newStore(),
		idem:      idemStore{m: make(map[string]*idemEntry)},
	}
	return s, nil
}

// TB is the part of testing.TB that NewStarted uses; declared here so the
// package, which the relay binary links for its demo, does not import
// testing.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
}

// NewStarted returns a Server for cfg listening on a random loopback port,
// closed by tb.Cleanup. It fails tb on any error.
func NewStarted(tb TB, cfg Config) *Server {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatalf("svixfake: %v", err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		tb.Fatalf("svixfake: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("svixfake: close: %v", err)
		}
	})
	return s
}

// Start listens on addr ("127.0.0.1:0" for a random port) and serves in
// the background until Close.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("svixfake: listen on %q: %w", addr, err)
	}
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	switch {
	case s.closed:
		_ = ln.Close()
		return errors.New("svixfake: start: server is closed")
	case s.httpSrv != nil:
		_ = ln.Close()
		return errors.New("svixfake: start: already started")
	}
	s.ln = ln
	s.served = make(chan struct{})
	s.httpSrv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(s.log),
	}
	go func() {
		defer close(s.served)
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", zap.Error(err))
		}
	}()
	return nil
}

// URL returns the base URL to give the Svix client ("http://127.0.0.1:port",
// no trailing slash), or "" before Start.
func (s *Server) URL() string {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Handler returns the fake as an http.Handler, to mount it elsewhere (for
// example in an httptest.Server). Close is still needed to stop DevMode
// deliveries. Dropping a connection needs an http.Hijacker (HTTP/1);
// elsewhere the handler aborts with http.ErrAbortHandler.
func (s *Server) Handler() http.Handler { return s }

// Close stops the listener, drops open connections, cuts short latency
// sleeps and pending delivery retries, and waits for every handler and
// delivery goroutine to return. Recorded state stays readable. It is safe
// to call more than once.
func (s *Server) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	srv := s.httpSrv
	s.closeMu.Unlock()

	// Close connections first, so a handler woken by the cancellation
	// below cannot answer any more.
	var err error
	if srv != nil {
		if cerr := srv.Close(); cerr != nil {
			err = fmt.Errorf("svixfake: close http server: %w", cerr)
		}
		<-s.served
	}
	s.cancel()
	s.inflight.Wait()
	if s.ownClient {
		s.client.CloseIdleConnections()
	}
	s.notify.broadcast()
	return err
}

// enter registers a handler or delivery with Close; false once closing.
func (s *Server) enter() bool {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return false
	}
	s.inflight.Add(1)
	return true
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// reply is an answer before it is written.
type reply struct {
	status int
	body   []byte
	header http.Header
	drop   bool
	msgID  string // message answered, for the record
}

// call is one request in flight.
type call struct {
	r     *http.Request
	req   *Request
	route route
	authz string // raw Authorization header, scope of idempotency keys

	msg    *messageIn   // parsed body of a message create
	msgErr []fieldError // its decoding error
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		writeReply(w, errorReply(http.StatusServiceUnavailable, "server_error", "svixfake is closed"))
		return
	}
	defer s.inflight.Done()

	start := time.Now()
	c := s.newCall(r)
	rep := s.dispatch(c)
	if !rep.drop && c.route.kind == routeMsgs && r.Method == http.MethodPost {
		s.sleepLatency(r.Context())
		if s.ctx.Err() != nil {
			rep = reply{drop: true} // closed during the delay: no answer
		}
	}
	c.req.Status = rep.status
	c.req.Dropped = rep.drop
	if rep.drop {
		c.req.Status = 0
	}
	if rep.msgID != "" {
		c.req.MsgID = rep.msgID
	}
	// Record before answering: once a client has its answer, the request
	// is in the log.
	s.reqs.add(c.req)
	s.notify.broadcast()
	if ce := s.log.Check(zapcore.DebugLevel, "request"); ce != nil {
		ce.Write(
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
			zap.Int("status", c.req.Status),
			zap.String("fault", string(c.req.Fault)),
			zap.Bool("replayed", c.req.Replayed),
			zap.String("app_id", c.req.AppID),
			zap.String("svix_msg_id", c.req.MsgID),
			zap.Duration("elapsed", time.Since(start)),
		)
	}
	if rep.drop {
		dropConnection(w)
		return
	}
	writeReply(w, rep)
}

// newCall reads the body (up to the limit) and builds the record.
func (s *Server) newCall(r *http.Request) *call {
	c := &call{
		r:     r,
		route: parseRoute(r.URL.Path),
		authz: r.Header.Get("Authorization"),
	}
	// The header copy is only made when something can read it.
	var hdr http.Header
	if s.reqs.max >= 0 || s.faults.hasInterceptor() {
		hdr = r.Header.Clone()
		if _, ok := hdr["Authorization"]; ok {
			hdr["Authorization"] = []string{RedactedAuthorization}
		}
	}
	c.req = &Request{
		Seq:            s.reqs.nextSeq(),
		Received:       s.now(),
		Method:         r.Method,
		Path:           r.URL.Path,
		RawQuery:       r.URL.RawQuery,
		Header:         hdr,
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
		AppID:          c.route.app,
	}
	body, truncated, err := readBody(r, s.cfg.MaxBodyBytes)
	if err != nil {
		s.log.Debug("read request body", zap.Error(err))
	}
	c.req.Body, c.req.Truncated = body, truncated
	if c.route.kind == routeMsgs && r.Method == http.MethodPost && !truncated {
		c.msg, c.msgErr = decodeMessageIn(body)
		if c.msg != nil {
			if c.msg.EventType != nil {
				c.req.EventType = *c.msg.EventType
			}
			if c.msg.EventID != nil {
				c.req.EventID = *c.msg.EventID
			}
		}
	}
	return c
}

// readBody reads at most limit bytes; a longer body is reported truncated
// and the rest is drained (up to a bound) so the client reads our 413
// instead of a reset connection.
func readBody(r *http.Request, limit int64) ([]byte, bool, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, false, nil
	}
	if cl := r.ContentLength; cl >= 0 && cl <= limit {
		buf := make([]byte, cl)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return buf, false, fmt.Errorf("read body: %w", err)
		}
		// Content-Length is authoritative in HTTP/1.1; nothing follows.
		return buf, false, nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return buf, false, fmt.Errorf("read body: %w", err)
	}
	if int64(len(buf)) <= limit {
		return buf, false, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<20))
	return buf[:limit], true, nil
}

// dispatch runs the fault pipeline, then the API.
func (s *Server) dispatch(c *call) reply {
	if rep, ok := s.injectBeforeAuth(c); ok {
		return rep
	}
	h, known := s.handlerFor(c)
	if h == nil {
		if known {
			return errorReply(http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed")
		}
		return errorReply(http.StatusNotFound, "not_found", "Entity not found")
	}
	if c.route.kind == routeHealth {
		return h(s, c)
	}
	if rep, ok := s.authenticate(c); !ok {
		return rep
	}
	if rep, ok := s.injectAfterAuth(c); ok {
		return rep
	}
	if c.req.Truncated {
		return errorReply(http.StatusRequestEntityTooLarge, "payload_too_large",
			fmt.Sprintf("Request payload is too large (limit %d bytes).", s.cfg.MaxBodyBytes))
	}
	return s.idempotent(c, h)
}

func (s *Server) authenticate(c *call) (reply, bool) {
	tok, ok := strings.CutPrefix(c.authz, "Bearer ")
	if !ok {
		return errorReply(http.StatusUnauthorized, "authentication_failed", "Invalid token"), false
	}
	accepted, known := s.tokens[strings.TrimSpace(tok)]
	switch {
	case !known:
		return errorReply(http.StatusUnauthorized, "authentication_failed", "Invalid token"), false
	case !accepted:
		return errorReply(http.StatusForbidden, "insufficient access", "Insufficient access for the given operation."), false
	}
	return reply{}, true
}

// writeReply writes rep; a nil body writes no body.
func writeReply(w http.ResponseWriter, rep reply) {
	h := w.Header()
	for k, v := range rep.header {
		h[k] = v
	}
	if len(rep.body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	w.WriteHeader(rep.status)
	if len(rep.body) > 0 {
		_, _ = w.Write(rep.body)
	}
}

// dropConnection closes the connection without answering.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	// HTTP/2 or a recorder: abort the response instead.
	panic(http.ErrAbortHandler)
}

// errorReply is Svix's standard error body {"code","detail"}.
func errorReply(status int, code, detail string) reply {
	return reply{status: status, body: errorBody(code, detail)}
}

func errorBody(code, detail string) []byte {
	return encodeJSON(struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}{code, detail})
}

// fieldError is one item of a 422 answer.
type fieldError struct {
	Loc  []string `json:"loc"`
	Msg  string   `json:"msg"`
	Type string   `json:"type"`
}

// validationReply is Svix's 422 body {"detail":[{"loc","msg","type"}]}.
func validationReply(errs []fieldError) reply {
	return reply{
		status: http.StatusUnprocessableEntity,
		body: encodeJSON(struct {
			Detail []fieldError `json:"detail"`
		}{errs}),
	}
}

func jsonReply(status int, v any) reply {
	return reply{status: status, body: encodeJSON(v)}
}

// encodeJSON marshals v without HTML escaping, so raw payloads go back out
// as received (modulo insignificant whitespace).
func encodeJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only our own types reach here; a failure is a bug in the fake.
		panic(fmt.Sprintf("svixfake: encode %T: %v", v, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// retryAfterSeconds renders d as whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(secs, 1), 10)
}
