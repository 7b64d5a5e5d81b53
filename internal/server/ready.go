package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReadyGauge is relay_ready: 1 while ready reports nil, else 0, checked at
// each scrape (a database ping, no query), so readiness can be alerted on
// from Prometheus.
func ReadyGauge(ready func(ctx context.Context) error) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_ready",
		Help: "1 when the relay is ready (database answers, River client runs, Svix has not rejected the token), else 0; as /readyz.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if ready(ctx) != nil {
			return 0
		}
		return 1
	})
}
