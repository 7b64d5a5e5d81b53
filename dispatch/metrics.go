package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediaplatform/relay/outbox"
)

// Metrics are the relay's Prometheus metrics. The gauges are sampled from
// the database on an interval (see Config.SampleInterval), never per scrape.
type Metrics struct {
	deliveries      *prometheus.CounterVec
	requestSecs     *prometheus.HistogramVec
	lagSecs         prometheus.Histogram
	rateLimitWaits  prometheus.Counter
	orderingSkipped prometheus.Counter
	pending         prometheus.Gauge
	inFlight        prometheus.Gauge
	failed          prometheus.Gauge
	oldestSecs      prometheus.Gauge
	part            *partitionMetrics
}

// NewMetrics creates the metrics and registers them with reg (a private
// registry when reg is nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_deliveries_total",
			Help: "Delivery attempts by event type and outcome (delivered, duplicate, retry, rate_limited, failed).",
		}, []string{"event_type", "outcome"}),
		requestSecs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "relay_svix_request_duration_seconds",
			Help:    "Duration of Svix message create calls by outcome (ok, rate_limited, auth, permanent, transient, cancelled).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"outcome"}),
		lagSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_delivery_lag_seconds",
			Help:    "Time from an outbox row's INSERT to Svix accepting it.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600},
		}),
		rateLimitWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_rate_limit_waits_total",
			Help: "Sends postponed by the client-side rate cap or by a Svix 429.",
		}),
		orderingSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_ordering_skipped_total",
			Help: "Rows that failed and were skipped in their key's order, so later rows of the key went on without them.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_rows_pending",
			Help: "Outbox rows not yet handed to the job queue (sampled).",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_rows_in_flight",
			Help: "Outbox rows handed to the job queue and not yet delivered or failed (sampled).",
		}),
		failed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_rows_failed",
			Help: "Outbox rows failed and waiting for outbox_replay (sampled).",
		}),
		oldestSecs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_oldest_undelivered_age_seconds",
			Help: "Age of the oldest outbox row neither delivered nor failed; 0 when there is none (sampled).",
		}),
	}
	// Every label set starts at 0, so increase() sees a series' first
	// failure (a series born at 1 has no earlier sample to rise from).
	for _, t := range outbox.EventTypes {
		for _, o := range []string{"delivered", "duplicate", "retry", "rate_limited", "failed"} {
			m.deliveries.WithLabelValues(string(t), o)
		}
	}
	for _, o := range []string{"ok", "rate_limited", "auth", "permanent", "transient", "cancelled"} {
		m.requestSecs.WithLabelValues(o)
	}
	m.part = newPartitionMetrics(reg)
	reg.MustRegister(m.deliveries, m.requestSecs, m.lagSecs, m.rateLimitWaits, m.orderingSkipped, m.pending, m.inFlight, m.failed, m.oldestSecs)
	return m
}

func (m *Metrics) observeRequest(err error, d time.Duration) {
	var (
		rl   *RateLimitedError
		auth *AuthError
		perm *PermanentError
	)
	outcome := "transient"
	switch {
	case err == nil:
		outcome = "ok"
	case errors.As(err, &rl):
		outcome = "rate_limited"
	case errors.As(err, &auth):
		outcome = "auth"
	case errors.As(err, &perm):
		outcome = "permanent"
	case errors.Is(err, context.Canceled):
		outcome = "cancelled"
	}
	m.requestSecs.WithLabelValues(outcome).Observe(d.Seconds())
	if outcome == "rate_limited" {
		m.rateLimitWaits.Inc()
	}
}

func (m *Metrics) delivered(eventType string, duplicate bool, lagSecs float64) {
	outcome := "delivered"
	if duplicate {
		outcome = "duplicate"
	}
	m.deliveries.WithLabelValues(eventType, outcome).Inc()
	m.lagSecs.Observe(lagSecs)
}

func (m *Metrics) outcome(eventType, outcome string) {
	m.deliveries.WithLabelValues(eventType, outcome).Inc()
}
