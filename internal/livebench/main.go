// Command livebench measures the live stream (make bench-live): how many
// concurrent streams one process holds and their memory, commit→client
// latency under load, and the reader's cost on PostgreSQL when idle.
//
// It runs the live Handler in this process on a loopback HTTP server and
// the clients in a child process (this program re-run with -client), so
// the server's heap is measured without the clients'. Results go to
// stdout as a short report.
package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/live"
	"github.com/mediaplatform/relay/schema"
)

var secret = []byte("livebench-secret-0123456789abcdef-0123")

type options struct {
	client   bool
	addr     string
	streams  int
	apps     int
	hold     int
	latency  int
	rate     int
	duration time.Duration
	idle     time.Duration
}

func main() {
	var o options
	flag.BoolVar(&o.client, "client", false, "run as the client process (internal)")
	flag.StringVar(&o.addr, "addr", "", "server address (client mode)")
	flag.IntVar(&o.streams, "streams", 0, "streams to open (client mode)")
	flag.IntVar(&o.apps, "apps", 100, "accounts the streams are spread over")
	flag.IntVar(&o.hold, "hold", 10000, "concurrent streams to hold")
	flag.IntVar(&o.latency, "latency-streams", 1000, "streams during the latency run")
	flag.IntVar(&o.rate, "rate", 200, "rows per second during the latency run")
	flag.DurationVar(&o.duration, "duration", 15*time.Second, "length of the latency run")
	flag.DurationVar(&o.idle, "idle", 10*time.Second, "length of the idle cost measurement")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if o.client {
		err = runClient(ctx, o)
	} else {
		err = runBench(ctx, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "livebench:", err)
		os.Exit(1)
	}
}

// countingTracer counts the queries the Handler's pool sends.
type countingTracer struct{ n atomic.Int64 }

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func runBench(ctx context.Context, o options) error {
	// Each stream is a descriptor in this process and one in the client's
	// (Go raises the soft limit to the hard one at start).
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(o.hold)+512 {
		return fmt.Errorf("the open-file limit is %d, too low for %d streams: raise it (ulimit -n %d, or the hard limit in limits.conf) or pass -hold", lim.Cur, o.hold, o.hold+1024)
	}
	base := cmp.Or(os.Getenv("DATABASE_URL"), os.Getenv("TEST_DATABASE_URL"))
	if base == "" {
		return errors.New("DATABASE_URL is required (make bench-live provides one)")
	}
	admin, err := pgxpool.New(ctx, base)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer admin.Close()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "livebench_" + hex.EncodeToString(b[:])
	cfg, err := pgxpool.ParseConfig(base)
	if err != nil {
		return err
	}
	// A database of its own when allowed: notifications are per database,
	// so other work on a shared one would wake the reader and blur its
	// idle cost. Otherwise a schema of its own.
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err == nil {
		defer admin.Exec(context.WithoutCancel(ctx), "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)") //nolint:errcheck // best effort
		cfg.ConnConfig.Database = name
		fmt.Printf("database: %s (its own, dropped at the end)\n", name)
	} else {
		if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		defer admin.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE") //nolint:errcheck // best effort
		cfg.ConnConfig.RuntimeParams["search_path"] = name
		fmt.Printf("schema: %s of a shared database (its idle cost includes other work's notifications)\n", name)
	}
	tracer := &countingTracer{}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := schema.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	wcfg := cfg.Copy()
	wcfg.ConnConfig.Tracer = nil
	writer, err := pgxpool.NewWithConfig(ctx, wcfg)
	if err != nil {
		return err
	}
	defer writer.Close()

	h, err := live.New(live.Config{DB: pool, Secret: secret, MaxStreamsPerApp: o.hold})
	if err != nil {
		return err
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go h.Run(hctx) //nolint:errcheck // returns nil when hctx ends
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(h.Close)
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	defer srv.Shutdown(context.Background())
	addr := ln.Addr().String()

	fmt.Printf("live bench: GOMAXPROCS=%d, NumCPU=%d, load average before: %s\n", runtime.GOMAXPROCS(0), runtime.NumCPU(), loadavg())

	// 1. Streams held, and memory per stream.
	before := heap()
	child, out, err := startClient(ctx, addr, o.hold, o.apps)
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := expect(out, "ready"); err != nil {
		child.Process.Kill() //nolint:errcheck // failing anyway
		return fmt.Errorf("hold %d streams: %w", o.hold, err)
	}
	opened := time.Since(start)
	after := heap()
	n := h.Streams()
	fmt.Printf("held: %d concurrent streams (aim 10,000), opened in %s\n", n, opened.Round(time.Millisecond))
	fmt.Printf("  server heap in use per stream: %.1f KiB (aim < 20 KiB); goroutine stacks per stream: %.1f KiB; goroutines: %d\n",
		float64(after.HeapInuse-before.HeapInuse)/float64(n)/1024, float64(after.StackInuse-before.StackInuse)/float64(n)/1024, runtime.NumGoroutine())

	// 2. Idle cost on PostgreSQL with every stream open.
	q0, r0 := tracer.n.Load(), h.ReadQueries()
	select {
	case <-time.After(o.idle):
	case <-ctx.Done():
		return ctx.Err()
	}
	q1, r1 := tracer.n.Load(), h.ReadQueries()
	fmt.Printf("idle reader cost: %.1f queries/s in total on PostgreSQL over %s with %d streams open (reads of new rows %.1f/s; the rest are sequencer steps), 1 LISTEN connection\n",
		float64(q1-q0)/o.idle.Seconds(), o.idle, n, float64(r1-r0)/o.idle.Seconds())
	stopClient(child, out)
	waitStreams(h, 0)

	// 3. Latency at load.
	child, out, err = startClient(ctx, addr, o.latency, o.apps)
	if err != nil {
		return err
	}
	if _, err := expect(out, "ready"); err != nil {
		return fmt.Errorf("open %d streams: %w", o.latency, err)
	}
	var committed sync.Map // entity id -> time its INSERT returned (committed)
	inserted, err := insertAtRate(ctx, writer, o, &committed)
	if err != nil {
		return err
	}
	q2 := tracer.n.Load()
	var fromCommit []float64
	line := stopClientEach(child, out, func(l string) {
		var e string
		var at int64
		if _, err := fmt.Sscanf(l, "R %s %d", &e, &at); err != nil {
			return
		}
		if c, ok := committed.Load(e); ok {
			fromCommit = append(fromCommit, max(0, float64(at-c.(int64))/1e6))
		}
	})
	slices.Sort(fromCommit)
	var st stats
	if err := json.Unmarshal([]byte(line), &st); err != nil {
		return fmt.Errorf("client stats %q: %w", line, err)
	}
	fmt.Printf("latency: %d streams over %d accounts, %d rows/s for %s (%d rows, %d deliveries expected): delivered %d, dropped streams %d\n",
		o.latency, o.apps, o.rate, o.duration, inserted, inserted*int64(o.latency/o.apps), st.Count, h.Dropped())
	if n := len(fromCommit); n > 0 {
		fmt.Printf("  commit→client (from the INSERT's commit returning to the client): p50 %.1f ms, p99 %.1f ms, max %.1f ms (aim p99 ≤ 100 ms)\n",
			fromCommit[n/2], fromCommit[n*99/100], fromCommit[n-1])
	}
	fmt.Printf("  INSERT start→client (includes the INSERT's own commit): p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", st.P50, st.P99, st.Max)
	fmt.Printf("  queries under load: %.1f/s\n", float64(q2-q1)/o.duration.Seconds())
	fmt.Printf("load average after: %s\n", loadavg())
	return nil
}

func heap() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

func waitStreams(h *live.Handler, n int) {
	for i := 0; i < 600 && h.Streams() != n; i++ {
		time.Sleep(50 * time.Millisecond)
	}
}

func startClient(ctx context.Context, addr string, streams, apps int) (*exec.Cmd, *bufio.Scanner, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-client", "-addr", addr, "-streams", fmt.Sprint(streams), "-apps", fmt.Sprint(apps))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	_ = stdin
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start client process: %w", err)
	}
	clientStdin[cmd] = stdin
	return cmd, bufio.NewScanner(stdout), nil
}

var clientStdin = map[*exec.Cmd]interface{ Close() error }{}

// stopClient closes the client's stdin (it then prints its stats and
// exits) and returns its last line.
func stopClient(cmd *exec.Cmd, out *bufio.Scanner) string {
	return stopClientEach(cmd, out, func(string) {})
}

// stopClientEach is stopClient, handing every line but the last to each.
func stopClientEach(cmd *exec.Cmd, out *bufio.Scanner, each func(string)) string {
	clientStdin[cmd].Close()
	var last string
	for out.Scan() {
		if last != "" {
			each(last)
		}
		last = out.Text()
	}
	_ = cmd.Wait()
	return last
}

func expect(out *bufio.Scanner, want string) (string, error) {
	for out.Scan() {
		if strings.HasPrefix(out.Text(), want) {
			return out.Text(), nil
		}
	}
	return "", errors.New("client process ended before " + want)
}

const insertSQL = `INSERT INTO outbox (app_id, event_type, data)
VALUES ($1, 'render.completed', jsonb_build_object('entity_id', $2::text, 'asset_id', $2::text, 'sent_ns', $3::bigint))`

// insertAtRate commits rows at o.rate per second (several at once when one
// commit takes longer than the interval), spread over the accounts, each
// carrying the time just before its INSERT.
func insertAtRate(ctx context.Context, db *pgxpool.Pool, o options, committed *sync.Map) (int64, error) {
	tick := time.NewTicker(time.Second / time.Duration(o.rate))
	defer tick.Stop()
	end := time.Now().Add(o.duration)
	var n atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := int64(0); time.Now().Before(end); i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return n.Load(), ctx.Err()
		case <-tick.C:
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			app := fmt.Sprintf("bench-%d", i%int64(o.apps))
			entity := fmt.Sprint("e", i)
			if _, err := db.Exec(ctx, insertSQL, app, entity, time.Now().UnixNano()); err != nil {
				failed.Store(err)
				return
			}
			committed.Store(entity, time.Now().UnixNano())
			n.Add(1)
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return n.Load(), fmt.Errorf("insert: %w", err)
	}
	// Let the last rows reach the clients before they report.
	time.Sleep(2 * time.Second)
	return n.Load(), nil
}
