package svixfake

import (
	"net/http"
	"sync"
	"time"
)

// idemStore replays the first 2xx answer to a POST for the same
// (Authorization, idempotency-key, request URI), as the Svix server's
// idempotency middleware does. Requests with the same scope are serialized:
// a second one waits for the first to finish, then replays its answer or,
// if the first was not a 2xx, runs itself.
type idemStore struct {
	mu sync.Mutex
	m  map[string]*idemEntry
	// expiry lists stored entries in the order they were stored, which is
	// expiry order for a fixed TTL; the head is dropped as it expires.
	expiry []idemExpiry
	head   int
}

type idemEntry struct {
	done    chan struct{} // closed when the first request finished
	stored  bool          // rep holds a 2xx answer to replay
	rep     reply
	expires time.Time
}

type idemExpiry struct {
	scope string
	entry *idemEntry
}

func (s *Server) idempotent(c *call, h handlerFunc) reply {
	key := c.req.IdempotencyKey
	if c.r.Method != http.MethodPost || key == "" {
		return h(s, c)
	}
	scope := c.authz + "\x00" + key + "\x00" + c.r.URL.RequestURI()
	st := &s.idem
	for {
		st.mu.Lock()
		st.expireLocked(s.now())
		e := st.m[scope]
		if e == nil {
			e = &idemEntry{done: make(chan struct{})}
			st.m[scope] = e
			st.mu.Unlock()
			return s.runFirst(c, h, scope, e)
		}
		if e.stored {
			rep := e.rep
			st.mu.Unlock()
			c.req.Replayed = true
			rep.header = rep.header.Clone()
			return rep
		}
		done := e.done
		st.mu.Unlock()
		select {
		case <-done:
		case <-c.r.Context().Done():
			return errorReply(http.StatusServiceUnavailable, "server_error", "client went away")
		case <-s.ctx.Done():
			return errorReply(http.StatusServiceUnavailable, "server_error", "svixfake is closed")
		}
	}
}

// runFirst runs h for the first request of a scope and stores a 2xx
// answer; any other answer releases the scope for the next request.
func (s *Server) runFirst(c *call, h handlerFunc, scope string, e *idemEntry) (rep reply) {
	st := &s.idem
	defer func() {
		st.mu.Lock()
		if rep.status >= 200 && rep.status <= 299 && !rep.drop {
			e.rep, e.stored = rep, true
			e.expires = s.now().Add(s.cfg.IdempotencyTTL)
			st.expiry = append(st.expiry, idemExpiry{scope: scope, entry: e})
		} else {
			delete(st.m, scope)
		}
		close(e.done)
		st.mu.Unlock()
	}()
	return h(s, c)
}

// expireLocked drops stored answers whose TTL has passed. Amortized O(1)
// per request.
func (st *idemStore) expireLocked(now time.Time) {
	for st.head < len(st.expiry) {
		x := st.expiry[st.head]
		if now.Before(x.entry.expires) {
			break
		}
		if st.m[x.scope] == x.entry {
			delete(st.m, x.scope)
		}
		st.expiry[st.head] = idemExpiry{}
		st.head++
	}
	// Reclaim the consumed prefix once it dominates the slice.
	if st.head > 1024 && st.head*2 > len(st.expiry) {
		st.expiry = append([]idemExpiry(nil), st.expiry[st.head:]...)
		st.head = 0
	}
}
