package dispatch

import (
	"math/rand/v2"
	"time"
)

// backoff is a capped exponential with equal jitter: attempt 1 waits
// between min/2 and min, each further attempt doubles that, up to max.
// The cap is what bounds recovery after an outage: a row waiting when Svix
// comes back is tried again within max.
func backoff(attempt int, minDelay, maxDelay time.Duration) time.Duration {
	d := minDelay
	for i := 1; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	half := d / 2
	return half + rand.N(half+1)
}

// jitter spreads d by up to a tenth, so rows snoozed together do not wake
// together.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/10+1)
}
