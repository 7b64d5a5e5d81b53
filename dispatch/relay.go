package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"golang.org/x/time/rate"

	"github.com/mediaplatform/relay/internal/sequencer"
)

// Config configures a Relay. Zero values take the documented defaults.
type Config struct {
	// Concurrency is the number of Svix sends in flight, across the batch
	// jobs River runs at once (as many). A send holds its slot for Svix's
	// answer only, so the most a relay sends is about Concurrency / Svix
	// latency: 400 covers 8,000 msg/s at 50 ms (200 capped a 50 ms drain
	// at 4,000 with no overhead at all; it measured ~3,200). Default 400.
	Concurrency int
	// BatchSize is the most rows one River job carries (their ids only).
	// Its rows are sent concurrently and their outcomes recorded in one
	// transaction. Default 100.
	BatchSize int
	// Writers is the most batch jobs that read or record their rows at
	// once (each a statement or transaction on the outbox); the others
	// wait their turn while their sends go on. More writers than the
	// database has cores to run them only adds contention: on 2 cores, 4
	// did the same work with ~30% less PostgreSQL CPU than 20. Default 4.
	Writers int
	// RateLimit caps sends to Svix, in messages per second, so a backlog
	// drains at the cap instead of in 429 storms. 0 means no cap. Default 0.
	RateLimit float64
	// JobTimeout bounds one attempt of a batch job: the rate-limit waits,
	// the Svix calls and recording the outcomes (which gets the last third,
	// at most 10 s). Default 30s.
	JobTimeout time.Duration
	// RescueAfter is how long a job may stay running before River's leader
	// takes it back (after a relay was killed mid-send). It must exceed
	// JobTimeout by at least a second, so a job is never run again while
	// its first run still records. Default JobTimeout + 15s, which with River's 30 s rescue
	// interval brings a killed relay's rows back within about 90 s.
	RescueAfter time.Duration
	// ShutdownTimeout bounds a graceful stop: claiming stops at once, sends
	// in flight get this long to finish before they are cut off (and left
	// for the next relay, not counted as attempts). Default 25s.
	ShutdownTimeout time.Duration
	// MaxAge is how long a row is retried after transient failures (5xx,
	// timeouts, network errors) before it is marked failed, counted from the
	// later of its insertion and its last outbox_replay. A rejected token
	// never fails rows. Default 72h.
	MaxAge time.Duration
	// IdempotencyWindow is how long Svix replays an idempotency key's
	// answer. A row first sent longer ago is looked up by its eventId before
	// it is sent again, and marked delivered if Svix has it. Default 12h.
	IdempotencyWindow time.Duration
	// BackoffMin and BackoffMax bound the delay between attempts of one row:
	// a capped exponential with jitter. BackoffMax also bounds how long rows
	// wait after a Svix outage ends. Defaults 1s and 60s.
	BackoffMin, BackoffMax time.Duration
	// PollInterval is how often the outbox is checked for rows without a
	// notification: the fallback for missed notifications, and the pickup
	// delay in PollOnly mode. Default 1s (250ms with PollOnly).
	PollInterval time.Duration
	// PollOnly disables LISTEN/NOTIFY, for PgBouncer in transaction pooling
	// mode. Default false.
	PollOnly bool
	// ClaimBatch is the most rows the feeder looks at per transaction.
	// Default 500.
	ClaimBatch int
	// RescanInterval is how often every waiting row is looked at again,
	// besides after a start, a replay or a sweep: the fallback for a row
	// handed back some other way. Default 30s.
	RescanInterval time.Duration
	// SequencerInterval is how often the relay numbers committed rows
	// (commit_seq) without a notification. Default 200ms, or PollInterval
	// when that is shorter.
	SequencerInterval time.Duration
	// StaleAfter is how long a row may stay handed to the job queue without
	// a live job (its job was deleted by hand, say) before it is handed over
	// again. Default 5m.
	StaleAfter time.Duration
	// SampleInterval is how often the row gauges are read. Default 10s.
	SampleInterval time.Duration
	// Ordering says which rows reach Svix in commit order: OrderByAsset
	// (the default), OrderByEntity or OrderOff. A row waits while an earlier
	// row of its key is neither delivered nor failed.
	Ordering string
	// BlockOnFailure makes a failed row hold back the later rows of its key
	// until it is replayed (by default they go on without it).
	BlockOnFailure bool
	// Queue is the River queue the relay uses. Default "outbox".
	Queue string
	// JobRetention is how long River keeps finished jobs. Default 1h.
	JobRetention time.Duration
	// Linger is how long a young batch job that has nothing left waits
	// for admission to hand it new rows before it returns (see
	// handoff.go). Default 1s.
	Linger time.Duration
	// Retention is how long delivered rows are kept: a periodic River job
	// (inserted by the leader only) drops the outbox partitions that ended
	// more than Retention ago and hold only rows delivered more than
	// Retention ago. Failed rows are kept until replayed or pruned by hand
	// (moved out of a partition before it goes); pending and in-flight
	// rows keep their partition. River keeps cancelled and discarded jobs
	// as long (7 days when Retention is 0). 0 (the default) keeps every
	// delivered row: no retention job runs. Otherwise at least 1m (under an
	// hour is for soak tests, with outbox_partition_config's interval in
	// minutes); negative is refused. `relay run` passes RELAY_RETENTION
	// (default 7d) here unchanged, so 0 means the same there.
	Retention time.Duration
	// PruneInterval is how often the retention job runs. Default 10m.
	PruneInterval time.Duration
	// PruneBatch is the most failed rows moved per transaction before
	// their partition is dropped. Default 1000.
	PruneBatch int
	// Logger receives the relay's logs and River's. Default: no logs.
	Logger *zap.Logger
	// Metrics receives the relay's metrics. Default: unregistered metrics.
	Metrics *Metrics
}

// WithDefaults returns c with zero values replaced by defaults.
func (c Config) WithDefaults() Config {
	c.Concurrency = cmp.Or(c.Concurrency, 400)
	c.BatchSize = cmp.Or(c.BatchSize, 100)
	c.Writers = cmp.Or(c.Writers, 4)
	c.IdempotencyWindow = cmp.Or(c.IdempotencyWindow, 12*time.Hour)
	c.RescanInterval = cmp.Or(c.RescanInterval, 30*time.Second)
	c.JobTimeout = cmp.Or(c.JobTimeout, 30*time.Second)
	c.RescueAfter = cmp.Or(c.RescueAfter, c.JobTimeout+15*time.Second)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 25*time.Second)
	c.MaxAge = cmp.Or(c.MaxAge, 72*time.Hour)
	c.BackoffMin = cmp.Or(c.BackoffMin, time.Second)
	c.BackoffMax = cmp.Or(c.BackoffMax, time.Minute)
	if c.PollOnly {
		c.PollInterval = cmp.Or(c.PollInterval, 250*time.Millisecond)
	}
	c.PollInterval = cmp.Or(c.PollInterval, time.Second)
	c.ClaimBatch = cmp.Or(c.ClaimBatch, 500)
	c.SequencerInterval = cmp.Or(c.SequencerInterval, min(200*time.Millisecond, c.PollInterval))
	c.StaleAfter = cmp.Or(c.StaleAfter, 5*time.Minute)
	c.SampleInterval = cmp.Or(c.SampleInterval, 10*time.Second)
	c.Queue = cmp.Or(c.Queue, "outbox")
	c.Ordering = cmp.Or(c.Ordering, OrderByAsset)
	c.JobRetention = cmp.Or(c.JobRetention, time.Hour)
	c.Linger = cmp.Or(c.Linger, time.Second)
	c.PruneInterval = cmp.Or(c.PruneInterval, 10*time.Minute)
	c.PruneBatch = cmp.Or(c.PruneBatch, 1000)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return c
}

func (c Config) validate() error {
	// A duration given negative would reach a ticker or a timer (which
	// panics) or mean "never": refuse it, naming the field. Retention takes
	// 0 (keep every delivered row), checked below.
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ShutdownTimeout", c.ShutdownTimeout}, {"MaxAge", c.MaxAge}, {"IdempotencyWindow", c.IdempotencyWindow},
		{"BackoffMin", c.BackoffMin}, {"BackoffMax", c.BackoffMax}, {"PollInterval", c.PollInterval},
		{"RescanInterval", c.RescanInterval}, {"SequencerInterval", c.SequencerInterval}, {"StaleAfter", c.StaleAfter},
		{"SampleInterval", c.SampleInterval}, {"JobRetention", c.JobRetention}, {"PruneInterval", c.PruneInterval}, {"Linger", c.Linger},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive, got %s", d.name, d.v)
		}
	}
	switch {
	case c.Concurrency < 1 || c.Concurrency > 10000:
		return fmt.Errorf("concurrency must be 1 to 10000, got %d", c.Concurrency)
	case c.RateLimit < 0:
		return fmt.Errorf("rate limit must not be negative, got %g", c.RateLimit)
	case c.BatchSize < 1 || c.BatchSize > 1000:
		return fmt.Errorf("batch size must be 1 to 1000, got %d", c.BatchSize)
	case c.Writers < 1 || c.Writers > 1000:
		return fmt.Errorf("writers must be 1 to 1000, got %d", c.Writers)
	case c.JobTimeout < 3*time.Second:
		return fmt.Errorf("job timeout must be at least 3s, got %s", c.JobTimeout)
	case c.RescueAfter < c.JobTimeout+time.Second:
		return fmt.Errorf("rescue-after (%s) must exceed the job timeout (%s) by at least 1s", c.RescueAfter, c.JobTimeout)
	case c.BackoffMin > c.BackoffMax:
		return fmt.Errorf("backoff min (%s) must not exceed backoff max (%s)", c.BackoffMin, c.BackoffMax)
	case c.Ordering != OrderByAsset && c.Ordering != OrderByEntity && c.Ordering != OrderOff:
		return fmt.Errorf("ordering must be asset, entity or off, got %q", c.Ordering)
	case c.ClaimBatch < 1 || c.ClaimBatch > 10000:
		return fmt.Errorf("claim batch must be 1 to 10000, got %d", c.ClaimBatch)
	case c.Retention != 0 && c.Retention < time.Minute:
		return fmt.Errorf("Retention must be 0 (keep every delivered row) or at least 1m, got %s", c.Retention)
	case c.PruneBatch < 1:
		return fmt.Errorf("prune batch must be at least 1, got %d", c.PruneBatch)
	}
	return nil
}

// Relay drains the outbox into a Sender. Build it with New, run it with
// Run; several relays may run against one database.
type Relay struct {
	cfg       Config
	pool      *pgxpool.Pool
	sender    Sender
	client    *river.Client[pgx.Tx]
	seq       *sequencer.Sequencer
	feeder    *feeder
	handoffs  handoffs // jobs waiting for rows
	limiter   *rate.Limiter
	sendSlots chan struct{} // one per send in flight
	writers   chan struct{} // one per batch job reading or recording its rows
	log       *zap.Logger
	metrics   *Metrics

	stopping       atomic.Bool
	running        atomic.Bool
	authRejectedAt atomic.Int64 // unix nanos of the last 401/403; 0 when the token works
	pauseUntil     atomic.Int64 // unix nanos before which no send is made (a 429's Retry-After)
}

// New builds a relay on pool, sending with sender.
func New(pool *pgxpool.Pool, sender Sender, cfg Config) (*Relay, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("relay config: %w", err)
	}
	r := &Relay{
		cfg:       cfg,
		pool:      pool,
		sender:    sender,
		sendSlots: make(chan struct{}, cfg.Concurrency),
		writers:   make(chan struct{}, cfg.Writers),
		log:       cfg.Logger.Named("dispatch"),
		metrics:   cfg.Metrics,
	}
	r.feeder = newFeeder(r)
	seq, err := sequencer.New(pool, sequencer.Config{
		PollInterval: cfg.SequencerInterval,
		OnSequenced:  func(int) { r.feeder.poke() },
		Logger:       cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("relay config: %w", err)
	}
	r.seq = seq
	if cfg.RateLimit > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), 1)
	}

	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &batchWorker{relay: r}); err != nil {
		return nil, fmt.Errorf("register delivery worker: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &legacyWorker{relay: r}); err != nil {
		return nil, fmt.Errorf("register worker for jobs from before batches: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &pruneWorker{relay: r}); err != nil {
		return nil, fmt.Errorf("register prune worker: %w", err)
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Logger:  slog.New(zapslog.NewHandler(cfg.Logger.Core(), zapslog.WithName("river"))),
		Queues:  map[string]river.QueueConfig{cfg.Queue: {MaxWorkers: cfg.Concurrency, FetchCooldown: 5 * time.Millisecond}},
		Workers: workers,
		// The queue fetches at most every 5 ms (above). The client's own
		// cooldown spaces its insert notifications, one per queue per
		// cooldown: a claim committed inside that window notifies nobody
		// and its jobs wait for the next claim or the poll, so it is 1 ms.
		FetchCooldown: time.Millisecond,
		// Jobs made available without an insert notification (a retry
		// job whose time came) wait for this poll.
		FetchPollInterval:           min(cfg.PollInterval, 100*time.Millisecond),
		PollOnly:                    cfg.PollOnly,
		JobTimeout:                  cfg.JobTimeout,
		RescueStuckJobsAfter:        cfg.RescueAfter,
		MaxAttempts:                 1000, // rows retry in jobs of their own; attempts here only count crashes and database errors
		CompletedJobRetentionPeriod: cfg.JobRetention,
		CancelledJobRetentionPeriod: cfg.riverRetention(),
		DiscardedJobRetentionPeriod: cfg.riverRetention(),
		PeriodicJobs:                r.periodicJobs(),
	})
	if err != nil {
		return nil, fmt.Errorf("create river client: %w", err)
	}
	r.client = client
	return r, nil
}

// River returns the relay's River client (for River UI).
func (r *Relay) River() *river.Client[pgx.Tx] { return r.client }

// Run delivers until ctx is done, then stops gracefully: it stops claiming
// rows, lets sends in flight finish within ShutdownTimeout, cuts off the
// rest (their rows stay pending for the next relay) and returns nil.
func (r *Relay) Run(ctx context.Context) error {
	// River's context outlives ctx: stopping it is done explicitly below.
	if err := r.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start river client: %w", err)
	}
	r.running.Store(true)
	r.log.Info("relay started", zap.Int("concurrency", r.cfg.Concurrency), zap.Float64("rate_limit", r.cfg.RateLimit),
		zap.Bool("poll_only", r.cfg.PollOnly))

	feedCtx, stopFeeding := context.WithCancel(ctx)
	var loops sync.WaitGroup
	loops.Go(func() { r.feeder.run(feedCtx) })
	loops.Go(func() { r.seq.Run(feedCtx) })
	if !r.cfg.PollOnly {
		loops.Go(func() { r.listen(feedCtx) })
	}
	loops.Go(func() { r.sampleLoop(feedCtx) })
	loops.Go(func() { r.partitionLoop(feedCtx) })
	loops.Go(func() { r.authLoop(feedCtx) })

	var runErr error
	select {
	case <-ctx.Done():
	case <-r.client.Stopped():
		runErr = errors.New("river client stopped unexpectedly")
	}

	r.log.Info("stopping: no new claims; waiting for sends in flight", zap.Duration("shutdown_timeout", r.cfg.ShutdownTimeout))
	stopFeeding()
	loops.Wait()
	r.stopping.Store(true)
	r.handoffs.close()
	r.running.Store(false)

	// Leave a few seconds of the budget for cutting off and bookkeeping.
	hard := min(5*time.Second, r.cfg.ShutdownTimeout/5)
	softCtx, cancelSoft := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout-hard)
	defer cancelSoft()
	if err := r.client.Stop(softCtx); err != nil {
		r.log.Warn("sends still in flight at the shutdown timeout; cutting them off")
		hardCtx, cancelHard := context.WithTimeout(context.WithoutCancel(ctx), hard)
		defer cancelHard()
		if err := r.client.StopAndCancel(hardCtx); err != nil {
			return errors.Join(runErr, fmt.Errorf("stop river client: %w", err))
		}
	}
	r.log.Info("relay stopped")
	return runErr
}

// Ready reports whether the relay can deliver: the database answers, the
// River client runs and Svix has not rejected the token since it last
// accepted it. A Svix outage is not a readiness fault: it is retried.
func (r *Relay) Ready(ctx context.Context) error {
	if err := r.pool.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if !r.running.Load() {
		return errors.New("river client is not running")
	}
	if r.authRejectedAt.Load() != 0 {
		return errors.New("svix rejects the auth token")
	}
	return nil
}

func (r *Relay) authAccepted() { r.authRejectedAt.Store(0) }
func (r *Relay) authRejected() { r.authRejectedAt.Store(time.Now().UnixNano()) }

// pause holds every send of this relay for d (a 429's Retry-After).
func (r *Relay) pause(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := r.pauseUntil.Load()
		if cur >= until || r.pauseUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

func (r *Relay) pausedFor() time.Duration {
	return time.Until(time.Unix(0, r.pauseUntil.Load()))
}

// waitForRate waits for the rate cap's next slot, giving the slot back when
// the wait would outlast ctx.
func (r *Relay) waitForRate(ctx context.Context) error {
	res := r.limiter.Reserve()
	delay := res.Delay()
	if delay == 0 {
		return nil
	}
	r.metrics.rateLimitWaits.Inc()
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < delay+5*time.Second {
		res.Cancel()
		return errors.New("rate cap wait would outlast the attempt")
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		res.Cancel()
		return ctx.Err()
	}
}

// authLoop checks the token at start, and again while it is rejected, so
// readiness reflects a bad token before any row fails and recovers after a
// rotation without waiting for a row's retry.
func (r *Relay) authLoop(ctx context.Context) {
	check := func() {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		var authErr *AuthError
		switch err := r.sender.CheckAuth(ctx); {
		case err == nil:
			r.authAccepted()
		case errors.As(err, &authErr):
			r.authRejected()
			r.log.Error("svix rejected the relay's token: check SVIX_AUTH_TOKEN", zap.Error(err))
		case ctx.Err() == nil:
			r.log.Warn("could not check the svix token (svix unreachable?)", zap.Error(err))
		}
	}
	check()
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if r.authRejectedAt.Load() != 0 {
				check()
			}
		}
	}
}
