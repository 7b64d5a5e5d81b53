package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/nosort"
	"github.com/mediaplatform/relay/internal/sequencer"
)

const (
	// stateSQL reads the cursor epoch, the highest commit_seq pruned and
	// the highest one visible (read through the index up to
	// sequencer.NumberedThroughSQL, so that a missing row costs a longer
	// read, never a wrong position): the position a new stream starts
	// from.
	stateSQL = `
SELECT l.epoch, l.pruned_through, greatest(l.pruned_through, coalesce((SELECT max(commit_seq) FROM outbox WHERE commit_seq <= ` + sequencer.NumberedThroughSQL + `), 0))
  FROM outbox_live l`
	// catalogSQL lists the event types a stream may filter on.
	catalogSQL = `SELECT name FROM outbox_event_type ORDER BY name`
	// tailSQL is the one reader's query: rows numbered after the last one
	// fanned out, in commit order (index outbox_commit_seq_idx, a Merge
	// Append over the partitions: it runs through nosort).
	tailSQL = `
SELECT commit_seq, app_id, event_type, data, created_at
  FROM outbox
 WHERE commit_seq > $1 AND commit_seq <= ` + sequencer.NumberedThroughSQL + `
 ORDER BY commit_seq
 LIMIT $2`
	// replaySQL reads one account's rows between a cursor and the
	// position the stream joined the hub at (index outbox_live_replay_idx).
	replaySQL = `
SELECT commit_seq, app_id, event_type, data, created_at
  FROM outbox
 WHERE app_id = $1 AND commit_seq > $2 AND commit_seq <= $3
   AND ($4::text[] IS NULL OR event_type = ANY ($4))
   AND ($5::text IS NULL OR data ->> 'asset_id' = $5)
 ORDER BY commit_seq
 LIMIT $6`

	tailBatch = 1000
)

// event is one outbox row, framed once for every stream that gets it.
type event struct {
	seq     int64
	appID   string
	typ     string
	assetID string
	frame   []byte // id, event and data lines and the blank line
}

// filter is what a stream asked for with ?types= and ?asset_id=.
type filter struct {
	types   []string // nil: every type
	assetID string   // "": every asset
}

func (f filter) match(e *event) bool {
	if f.assetID != "" && e.assetID != f.assetID {
		return false
	}
	if f.types == nil {
		return true
	}
	for _, t := range f.types {
		if t == e.typ {
			return true
		}
	}
	return false
}

// subscriber is one stream as the hub sees it: a bounded queue, and gone,
// closed when the hub dropped the stream for falling behind.
type subscriber struct {
	app    string
	filter filter
	ch     chan *event
	gone   chan struct{}
}

var (
	errClosing       = errors.New("live: shutting down")
	errTooManyForApp = errors.New("live: too many streams for this account")
)

// hub reads new rows with one query at a time and fans them out, in
// commit order, to the streams of their account.
type hub struct {
	cfg Config
	log *zap.Logger

	ready   chan struct{} // closed once epoch, types and last are known
	closing chan struct{} // closed by close: every stream ends
	closeMu sync.Once
	wake    chan struct{}
	replays chan struct{} // semaphore of replay queries

	// Set once before ready is closed.
	epoch string
	types map[string]bool

	mu     sync.Mutex
	last   int64 // highest commit_seq fanned out
	subs   map[string]map[*subscriber]struct{}
	count  int
	closed bool

	dropped atomic.Int64 // streams cut off for falling behind
	queries atomic.Int64 // tail queries run
}

func newHub(cfg Config) *hub {
	return &hub{
		cfg: cfg, log: cfg.Logger,
		ready: make(chan struct{}), closing: make(chan struct{}), wake: make(chan struct{}, 1),
		replays: make(chan struct{}, cfg.MaxConcurrentReplays),
		subs:    make(map[string]map[*subscriber]struct{}),
	}
}

func (h *hub) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run reads until ctx ends, then ends every stream.
func (h *hub) run(ctx context.Context) error {
	defer h.close()
	if err := h.init(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var seq *sequencer.Sequencer
	if !h.cfg.NoSequencer {
		var err error
		seq, err = sequencer.New(h.cfg.DB, sequencer.Config{
			PollInterval: h.cfg.PollInterval, Logger: h.log,
			OnSequenced: func(int) { h.poke() },
		})
		if err != nil {
			return fmt.Errorf("live: %w", err)
		}
		wg.Go(func() { seq.Run(ctx) })
	}
	if !h.cfg.PollOnly {
		wg.Go(func() { h.listen(ctx, seq) })
	}

	tick := time.NewTicker(h.cfg.PollInterval)
	defer tick.Stop()
	for {
		h.drain(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-h.wake:
		case <-tick.C:
		}
	}
}

// init reads the epoch, the catalog and the starting position, retrying
// until the database answers.
func (h *hub) init(ctx context.Context) error {
	for {
		err := h.load(ctx)
		if err == nil {
			close(h.ready)
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		h.log.Warn("live stream cannot read the outbox yet; retrying", zap.Error(err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (h *hub) load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var pruned, head int64
	if err := h.cfg.DB.QueryRow(ctx, stateSQL).Scan(&h.epoch, &pruned, &head); err != nil {
		return fmt.Errorf("read live stream state (is the database migrated?): %w", err)
	}
	rows, err := h.cfg.DB.Query(ctx, catalogSQL)
	if err != nil {
		return fmt.Errorf("read event catalog: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read event catalog: %w", err)
	}
	h.types = make(map[string]bool, len(names))
	for _, n := range names {
		h.types[n] = true
	}
	h.mu.Lock()
	h.last = head
	h.mu.Unlock()
	return nil
}

// listen wakes the sequencer when rows are written and the reader when
// they are numbered (by this process or any other), and both after every
// (re)connect. Notifications only wake: the query is the truth.
func (h *hub) listen(ctx context.Context, seq *sequencer.Sequencer) {
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, h.cfg.DB.Config().ConnConfig.Copy())
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				h.log.Warn("live stream listener lost its connection; polling until it is back", zap.Error(err))
			}
		},
		ReconnectDelay: time.Second,
	}
	l.Handle("outbox_sequenced", wakeHandler(h.poke))
	if seq != nil {
		l.Handle("outbox", wakeHandler(seq.Wake))
	}
	if err := l.Listen(ctx); err != nil && ctx.Err() == nil {
		h.log.Error("live stream listener stopped; polling only", zap.Error(err))
	}
}

type wakeHandler func()

func (w wakeHandler) HandleNotification(context.Context, *pgconn.Notification, *pgx.Conn) error {
	w()
	return nil
}

func (w wakeHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	w()
	return nil
}

// drain reads batches until a short one.
func (h *hub) drain(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := h.read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("live stream read failed; retrying at the next poll", zap.Error(err))
			}
			return
		}
		if n < tailBatch {
			return
		}
	}
}

func (h *hub) read(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h.mu.Lock()
	after := h.last
	h.mu.Unlock()
	h.queries.Add(1)
	// With the Sort off: after a backlog was numbered, a Sort of every
	// row after the last one fanned out would cost the backlog per read.
	var events []*event
	err := nosort.Query(ctx, h.cfg.DB, tailSQL, []any{after, tailBatch}, func(rows pgx.Rows) error {
		var err error
		events, err = h.collect(rows)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read new outbox rows: %w", err)
	}
	h.fanOut(events)
	return len(events), nil
}

func (h *hub) collect(rows pgx.Rows) ([]*event, error) {
	var out []*event
	var (
		seq       int64
		app, typ  string
		data      []byte
		createdAt time.Time
	)
	_, err := pgx.ForEachRow(rows, []any{&seq, &app, &typ, &data, &createdAt}, func() error {
		e, err := h.newEvent(seq, app, typ, data, createdAt)
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// newEvent frames a row: its cursor, its type, and the webhook body (type
// and data, as stored) with created_at, on one line.
func (h *hub) newEvent(seq int64, app, typ string, data []byte, createdAt time.Time) (*event, error) {
	var probe struct {
		AssetID string `json:"asset_id"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("outbox row %d: data is not a JSON object: %w", seq, err)
	}
	typJSON, _ := json.Marshal(typ)
	id := cursor{epoch: h.epoch, seq: seq}.String()
	var b strings.Builder
	b.Grow(len(id) + 2*len(typ) + len(data) + 96)
	b.WriteString("id: ")
	b.WriteString(id)
	b.WriteString("\nevent: ")
	b.WriteString(typ)
	b.WriteString("\ndata: {\"type\":")
	b.Write(typJSON)
	b.WriteString(",\"data\":")
	b.Write(data) // jsonb text: one line, numbers exactly as stored
	b.WriteString(",\"created_at\":\"")
	b.WriteString(createdAt.UTC().Format(time.RFC3339Nano))
	b.WriteString("\"}\n\n")
	return &event{seq: seq, appID: app, typ: typ, assetID: probe.AssetID, frame: []byte(b.String())}, nil
}

// fanOut hands events to their account's streams without ever waiting: a
// stream whose queue is full is dropped (it resumes from its cursor).
func (h *hub) fanOut(events []*event) {
	if len(events) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range events {
		for s := range h.subs[e.appID] {
			if !s.filter.match(e) {
				continue
			}
			select {
			case s.ch <- e:
			default:
				h.removeLocked(s)
				close(s.gone)
				h.dropped.Add(1)
			}
		}
		h.last = e.seq
	}
}

// subscribe adds a stream and returns the position it joins at: every
// event after it reaches the stream's queue.
func (h *hub) subscribe(app string, f filter) (*subscriber, int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, 0, errClosing
	}
	if len(h.subs[app]) >= h.cfg.MaxStreamsPerApp {
		return nil, 0, errTooManyForApp
	}
	s := &subscriber{app: app, filter: f, ch: make(chan *event, h.cfg.Buffer), gone: make(chan struct{})}
	m := h.subs[app]
	if m == nil {
		m = make(map[*subscriber]struct{})
		h.subs[app] = m
	}
	m[s] = struct{}{}
	h.count++
	return s, h.last, nil
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(s)
}

func (h *hub) removeLocked(s *subscriber) {
	m := h.subs[s.app]
	if _, ok := m[s]; !ok {
		return
	}
	delete(m, s)
	h.count--
	if len(m) == 0 {
		delete(h.subs, s.app)
	}
}

func (h *hub) streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count
}

func (h *hub) position() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// close ends every stream and refuses new ones.
func (h *hub) close() {
	h.closeMu.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		close(h.closing)
	})
}

// Reset reasons, sent in the reset event's data.
const (
	resetEpoch  = "cursor_from_another_database"
	resetPruned = "rows_pruned"
	resetAhead  = "cursor_ahead_of_database"
	resetLimit  = "replay_limit"
)

// replay reads app's rows after c up to upTo (the position the stream
// joined at), in commit order, in one snapshot. It returns a reset reason
// instead when those rows cannot all be replayed.
func (h *hub) replay(ctx context.Context, app string, f filter, c cursor, upTo int64) ([]*event, string, error) {
	if c.epoch != h.epoch {
		return nil, resetEpoch, nil
	}
	select {
	case h.replays <- struct{}{}:
		defer func() { <-h.replays }()
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tx, err := h.cfg.DB.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, "", fmt.Errorf("begin replay: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	var epoch string
	var pruned, head int64
	if err := tx.QueryRow(ctx, stateSQL).Scan(&epoch, &pruned, &head); err != nil {
		return nil, "", fmt.Errorf("read live stream state: %w", err)
	}
	switch {
	case epoch != c.epoch:
		return nil, resetEpoch, nil
	case c.seq > head:
		return nil, resetAhead, nil
	case c.seq < pruned:
		return nil, resetPruned, nil
	case c.seq >= upTo:
		return nil, "", nil
	}
	var assetID *string
	if f.assetID != "" {
		assetID = &f.assetID
	}
	// The account's rows in commit order through a Merge Append of the
	// partitions' outbox_live_replay_idx that stops after the limit, not
	// a Sort of every row since the cursor (see package nosort).
	if _, err := tx.Exec(ctx, nosort.SQL); err != nil {
		return nil, "", fmt.Errorf("replay outbox rows: %w", err)
	}
	rows, err := tx.Query(ctx, replaySQL, app, c.seq, upTo, f.types, assetID, h.cfg.ReplayLimit+1)
	if err != nil {
		return nil, "", fmt.Errorf("replay outbox rows: %w", err)
	}
	events, err := h.collect(rows)
	if err != nil {
		return nil, "", fmt.Errorf("replay outbox rows: %w", err)
	}
	if len(events) > h.cfg.ReplayLimit {
		return nil, resetLimit, nil
	}
	return events, "", nil
}
