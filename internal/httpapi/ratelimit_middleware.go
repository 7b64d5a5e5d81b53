package httpapi

import (
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimiter limits requests per principal (per API key) with a token
// bucket each (golang.org/x/time/rate). Buckets idle for longer than it
// takes them to refill are dropped, so memory follows the keys in use.
type RateLimiter struct {
	limit rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewRateLimiter allows each key perSecond requests a second on average
// and burst at once. perSecond <= 0 means no limit.
func NewRateLimiter(perSecond float64, burst int) *RateLimiter {
	return &RateLimiter{limit: rate.Limit(perSecond), burst: max(burst, 1), buckets: make(map[string]*bucket)}
}

// wait returns how long the key must wait before this request would be
// allowed; 0 means allowed now (and counted).
func (l *RateLimiter) wait(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	l.sweep(now)
	res := b.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// sweep drops buckets that have been idle long enough to be full again.
// Caller holds mu.
func (l *RateLimiter) sweep(now time.Time) {
	idle := time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second)) + time.Minute
	if now.Sub(l.lastSweep) < idle {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if now.Sub(b.seen) > idle {
			delete(l.buckets, k)
		}
	}
}

// Middleware answers 429 rate_limited with Retry-After once the principal
// (set by Authenticate) is over its rate. It must run after Authenticate.
func (l *RateLimiter) Middleware(next http.Handler) http.Handler {
	if l == nil || l.limit <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		key := p.KeyID
		if key == "" {
			key = p.AppID
		}
		if ok {
			if d := l.wait(key, time.Now()); d > 0 {
				WriteError(w, r, &Error{
					Status: http.StatusTooManyRequests, Type: TypeRateLimit, Code: "rate_limited", RetryAfter: d,
					Message: "Too many requests with this API key; retry after the number of seconds in Retry-After.",
				})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
