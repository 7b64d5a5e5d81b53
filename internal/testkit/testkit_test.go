package testkit_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svix/svix-webhooks/go/models"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/internal/testkit"
)

// fatalRecorder records Fatalf and ends its goroutine, as testing.T does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	t.Run("Holds", func(t *testing.T) {
		t.Parallel()
		var n atomic.Int32
		go func() {
			for range 3 {
				n.Add(1)
			}
		}()
		testkit.WaitFor(t, 10*time.Second, "three increments", func() bool { return n.Load() == 3 })
	})
	t.Run("TimesOut", func(t *testing.T) {
		t.Parallel()
		rec := &fatalRecorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			testkit.WaitFor(rec, 50*time.Millisecond, "a condition that never holds", func() bool { return false })
		}()
		<-done
		if !strings.Contains(rec.msg, "waiting for a condition that never holds") {
			t.Fatalf("failure message %q does not name what was awaited", rec.msg)
		}
	})
}

func TestLogBuffer(t *testing.T) {
	t.Parallel()
	log, logs := testkit.Logger()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { log.Info("line", zap.Int("writer", i)) })
	}
	wg.Wait()
	if got := strings.Count(logs.String(), `"msg":"line"`); got != 8 {
		t.Fatalf("%d lines logged, want 8:\n%s", got, logs.String())
	}
}

func TestStartSvix(t *testing.T) {
	t.Parallel()
	fake, client := testkit.StartSvix(t, svixfake.Config{})
	app := "acme"
	if _, err := client.Application.GetOrCreate(t.Context(), models.ApplicationIn{Name: app, Uid: &app}, nil); err != nil {
		t.Fatal(err)
	}
	if got := len(fake.Requests()); got == 0 {
		t.Fatal("the fake saw no request from the client")
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	env := testkit.Start(t, svixfake.Config{})
	var n int
	if err := env.Pool.QueryRow(t.Context(), "SELECT count(*) FROM outbox").Scan(&n); err != nil {
		t.Fatalf("the schema is not migrated: %v", err)
	}
	if err := env.Client.Health.Get(t.Context()); err != nil {
		t.Fatalf("the client does not reach the fake: %v", err)
	}
}

func TestInsertRow(t *testing.T) {
	t.Parallel()
	env := testkit.Start(t, svixfake.Config{})
	data := `{"entity_id":"render_1","asset_id":"asset_1"}`
	pending := testkit.InsertRow(t, env.Pool, "acme", "render.completed", data, "")
	failed := testkit.InsertRow(t, env.Pool, "acme", "render.completed", data, "enqueued_at = now(), failed_at = now(), attempts = 1, last_error = 'x'")
	for id, wantFailed := range map[int64]bool{pending: false, failed: true} {
		var isFailed bool
		if err := env.Pool.QueryRow(t.Context(), "SELECT failed_at IS NOT NULL FROM outbox WHERE id = $1", id).Scan(&isFailed); err != nil {
			t.Fatal(err)
		}
		if isFailed != wantFailed {
			t.Errorf("row %d failed = %v, want %v", id, isFailed, wantFailed)
		}
	}
}
