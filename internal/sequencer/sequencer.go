// Package sequencer numbers committed outbox rows in commit order.
//
// Producers take no lock and wait for no one: an outbox row is written with
// commit_seq NULL, and after it commits, a sequencer step (the SQL function
// outbox_sequence, migration 00003) gives it the next number under an
// advisory lock, so numbers follow the order in which rows became visible.
// The per-asset ordering of deliveries and the live stream's cursor both
// read commit_seq. Any number of processes may run a Sequencer against one
// outbox: their steps take turns.
//
// A Sequencer does not listen for notifications itself: its owner, which
// already holds a LISTEN connection, calls Wake when the outbox notifies,
// and the poll covers lost notifications and PgBouncer's transaction mode.
package sequencer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// NumberedThroughSQL is an SQL expression: the highest commit_seq the
// statement's snapshot can see. Each step writes its last number to
// outbox_sequence_state as it commits (migration 00010), so every row
// numbered up to the value is visible and none above it is: a read of
// outbox_commit_seq_idx bounded by it (commit_seq <= ...) never reaches
// the entries of a step still running, which it would otherwise step over
// one by one, each a heap visit. Without the row (deleted by hand) it
// bounds nothing.
const NumberedThroughSQL = `coalesce((SELECT numbered_through FROM outbox_sequence_state), 9223372036854775807)`

// sequenceSQL runs one step; it must run on its own (autocommit, READ
// COMMITTED), which a pool's QueryRow does.
const sequenceSQL = `SELECT outbox_sequence($1)`

// Config configures a Sequencer.
type Config struct {
	// Batch is the most rows one step numbers. Default 5,000.
	Batch int
	// PollInterval is how often the Sequencer looks for committed rows
	// when nothing woke it. Default 200ms: a row is numbered within this
	// long of its commit even when its notification is lost.
	PollInterval time.Duration
	// StepTimeout bounds one step. Default 30s.
	StepTimeout time.Duration
	// OnSequenced, when set, is called after every step that numbered
	// rows, with how many (the step's notification reaches other
	// processes).
	OnSequenced func(n int)
	// Logger receives warnings; default a no-op logger.
	Logger *zap.Logger
}

func (c Config) withDefaults() Config {
	c.Batch = cmp.Or(c.Batch, 5000)
	c.PollInterval = cmp.Or(c.PollInterval, 200*time.Millisecond)
	c.StepTimeout = cmp.Or(c.StepTimeout, 30*time.Second)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

func (c Config) validate() error {
	if c.Batch < 1 {
		return fmt.Errorf("sequencer: Batch must be at least 1, got %d", c.Batch)
	}
	if c.PollInterval <= 0 {
		return fmt.Errorf("sequencer: PollInterval must be positive, got %s", c.PollInterval)
	}
	if c.StepTimeout <= 0 {
		return fmt.Errorf("sequencer: StepTimeout must be positive, got %s", c.StepTimeout)
	}
	return nil
}

// Sequencer numbers committed outbox rows, woken by its owner and by a poll.
type Sequencer struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *zap.Logger
	wake chan struct{}

	mu    sync.Mutex
	steps map[uint32]time.Time // backend pid -> when a step of ours last began on it
}

// New returns a Sequencer for the outbox in pool's search_path. Zero
// fields of cfg take their defaults; negative ones are refused.
func New(pool *pgxpool.Pool, cfg Config) (*Sequencer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Sequencer{pool: pool, cfg: cfg, log: cfg.Logger.Named("sequencer"), wake: make(chan struct{}, 1),
		steps: map[uint32]time.Time{}}, nil
}

// Own reports whether a notification on outbox_sequenced sent by backend
// pid comes from a step of this Sequencer, whose OnSequenced has run or
// is about to: its owner need not act on it again. It answers from the
// connections its steps ran on within the last StepTimeout, so a foreign
// step is taken for its own only if the server reused one of those pids
// that soon.
func (s *Sequencer) Own(pid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.steps[pid]
	return ok && time.Since(at) < s.cfg.StepTimeout
}

func (s *Sequencer) stepOn(pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.steps[pid] = now
	if len(s.steps) > 64 {
		for p, at := range s.steps {
			if now.Sub(at) >= s.cfg.StepTimeout {
				delete(s.steps, p)
			}
		}
	}
}

// Wake asks for a step soon; it never blocks.
func (s *Sequencer) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Step numbers every committed row that has no number yet, in batches,
// and returns how many it numbered.
func (s *Sequencer) Step(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := s.step(ctx)
		total += n
		if err != nil {
			return total, err
		}
		if n > 0 && s.cfg.OnSequenced != nil {
			s.cfg.OnSequenced(n)
		}
		if n < s.cfg.Batch {
			return total, nil
		}
	}
}

func (s *Sequencer) step(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StepTimeout)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("number committed outbox rows: %w", err)
	}
	defer conn.Release()
	s.stepOn(conn.Conn().PgConn().PID())
	var n int
	if err := conn.QueryRow(ctx, sequenceSQL, s.cfg.Batch).Scan(&n); err != nil {
		return 0, fmt.Errorf("number committed outbox rows: %w", err)
	}
	return n, nil
}

// Run steps at once, then whenever woken and every PollInterval, until
// ctx ends. A failed step is logged and retried at the next tick.
func (s *Sequencer) Run(ctx context.Context) {
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	for {
		if _, err := s.Step(ctx); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
			s.log.Warn("numbering committed outbox rows failed; retrying", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-tick.C:
		}
	}
}
