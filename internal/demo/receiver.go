package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	svix "github.com/svix/svix-webhooks/go"
)

// maxBody bounds a delivery's body; Svix payloads are at most 1 MiB.
const maxBody = 1 << 20

// Fault is a failure the receiver simulates on the first delivery of a
// message, to show Svix's retries and the receiver's deduplication.
type Fault int

const (
	// FaultNone answers every verified delivery 200.
	FaultNone Fault = iota
	// FaultRefuse answers the first delivery 503 without processing it, as
	// a receiver that is briefly down: Svix retries, the retry is processed.
	FaultRefuse
	// FaultLoseAck processes the first delivery and then answers 500, as
	// when the acknowledgement is lost: Svix retries, and the receiver
	// recognises the svix-id and acknowledges without processing it again.
	FaultLoseAck
)

// Delivery is one webhook request as the receiver saw and answered it.
type Delivery struct {
	App        string    // from the endpoint URL, /webhooks/{app}
	SvixID     string    // the svix-id header: the Svix message id
	Try        int       // deliveries of this svix-id seen so far, this one included
	ReceivedAt time.Time // when the request arrived
	// Type and Data are the body's "type" and "data", as delivered.
	Type string
	Data json.RawMessage
	// Verified is set when svix.NewWebhook(secret).Verify accepted the
	// body and the svix-id, svix-timestamp and svix-signature headers.
	Verified bool
	// Err says why a delivery was not verified, or how its body differs
	// from exactly {"type", "data"}.
	Err string
	// Processed is set on the one delivery of a svix-id that the receiver
	// acted on; Duplicate on a later one it acknowledged without acting.
	Processed, Duplicate bool
	// Status is what the receiver answered.
	Status int
	// Fault is the failure simulated on this delivery, if any.
	Fault Fault
}

// Receiver is a webhook endpoint written as a customer would write one: it
// verifies every delivery with the Svix library, acts on each svix-id once,
// and answers 2xx only once it has acted. Deliveries are reported on C.
type Receiver struct {
	ln  net.Listener
	srv *http.Server
	out chan Delivery
	// stop unblocks handlers waiting to report once the watcher is gone.
	stop     chan struct{}
	stopOnce sync.Once
	served   chan struct{}

	mu      sync.Mutex
	hooks   map[string]*svix.Webhook // app uid -> verifier with its endpoint's secret
	tries   map[string]int           // svix-id -> deliveries seen
	handled map[string]bool          // svix-id -> processed
	faults  map[string]Fault         // data.entity_id -> fault on its first delivery
}

// newReceiver listens on addr; Serve is started at once.
func newReceiver(addr string, faults map[string]Fault) (*Receiver, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("receiver: listen on %q: %w", addr, err)
	}
	r := &Receiver{
		ln:      ln,
		out:     make(chan Delivery, 256),
		stop:    make(chan struct{}),
		served:  make(chan struct{}),
		hooks:   make(map[string]*svix.Webhook),
		tries:   make(map[string]int),
		handled: make(map[string]bool),
		faults:  faults,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhooks/{app}", r.handle)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(r.served)
		_ = r.srv.Serve(ln) // ErrServerClosed after Close
	}()
	return r, nil
}

// URL is the endpoint URL to register for app.
func (r *Receiver) URL(app string) string {
	return "http://" + r.ln.Addr().String() + "/webhooks/" + app
}

// C reports every delivery, in the order they were answered.
func (r *Receiver) C() <-chan Delivery { return r.out }

// setSecret installs the endpoint secret (whsec_...) of app.
func (r *Receiver) setSecret(app, secret string) error {
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		return fmt.Errorf("receiver: secret of app %s: %w", app, err)
	}
	r.mu.Lock()
	r.hooks[app] = wh
	r.mu.Unlock()
	return nil
}

// Close stops accepting deliveries and waits for the handlers.
func (r *Receiver) Close(ctx context.Context) error {
	r.stopOnce.Do(func() { close(r.stop) })
	err := r.srv.Shutdown(ctx)
	<-r.served
	return err
}

func (r *Receiver) handle(w http.ResponseWriter, req *http.Request) {
	d := Delivery{App: req.PathValue("app"), SvixID: req.Header.Get("svix-id"), ReceivedAt: time.Now()}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))

	r.mu.Lock()
	hook := r.hooks[d.App]
	r.tries[d.SvixID]++
	d.Try = r.tries[d.SvixID]
	r.mu.Unlock()

	switch {
	case err != nil:
		d.Status, d.Err = http.StatusBadRequest, fmt.Sprintf("read body: %v", err)
	case len(body) > maxBody:
		d.Status, d.Err = http.StatusRequestEntityTooLarge, "body over 1 MiB"
	case hook == nil:
		d.Status, d.Err = http.StatusNotFound, "no endpoint secret for app "+d.App
	default:
		if err := hook.Verify(body, req.Header); err != nil {
			d.Status, d.Err = http.StatusBadRequest, "signature: "+err.Error()
			break
		}
		d.Verified = true
		var entityID string
		d.Type, d.Data, entityID, d.Err = parseBody(body)
		d.Status = r.act(&d, entityID)
	}
	select {
	case r.out <- d:
	case <-r.stop:
	}
	w.WriteHeader(d.Status)
}

// act decides, under the lock, whether this delivery is the one processed,
// a duplicate, or one that a simulated fault answers.
func (r *Receiver) act(d *Delivery, entityID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.handled[d.SvixID] {
		d.Duplicate = true
		return http.StatusOK
	}
	fault := r.faults[entityID]
	if d.Try > 1 {
		fault = FaultNone
	}
	d.Fault = fault
	switch fault {
	case FaultRefuse:
		return http.StatusServiceUnavailable
	case FaultLoseAck:
		r.handled[d.SvixID], d.Processed = true, true
		return http.StatusInternalServerError
	default:
		r.handled[d.SvixID], d.Processed = true, true
		return http.StatusNoContent
	}
}

// parseBody reads {"type": ..., "data": {...}}; problem describes any other
// shape (another key, a missing one, data not an object).
func parseBody(body []byte) (typ string, data json.RawMessage, entityID, problem string) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return "", nil, "", "body is not a JSON object: " + err.Error()
	}
	var problems []string
	for k := range top {
		if k != "type" && k != "data" {
			problems = append(problems, fmt.Sprintf("unexpected key %q", k))
		}
	}
	if err := json.Unmarshal(top["type"], &typ); err != nil || typ == "" {
		problems = append(problems, `"type" is not a non-empty string`)
	}
	data = top["data"]
	var ids struct {
		EntityID string `json:"entity_id"`
	}
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) && json.Unmarshal(data, &ids) == nil {
		entityID = ids.EntityID
	} else {
		problems = append(problems, `"data" is not a JSON object`)
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		problem = "body is not exactly {type, data}: " + strings.Join(problems, "; ")
	}
	return typ, data, entityID, problem
}
