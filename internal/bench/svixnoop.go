package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/relayproc"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// svixNoop sends n messages through the relay's own sender (dispatch's
// SvixSender: the Svix Go client with the relay's transport settings) to
// the fake Svix at 0 ms, with as many in flight as the relay's
// concurrency, in this process and without a database: what one send per
// row costs this machine, client and server together. With river-noop it
// gives the ceiling printed beside each River ratio.
func (b *bench) svixNoop(ctx context.Context, n int) (_ DrainResult, err error) {
	res := DrainResult{Scenario: "svix-noop", Rows: n}
	fake, err := b.newFake()
	if err != nil {
		return res, fmt.Errorf("start fake svix: %w", err)
	}
	defer fake.Close() //nolint:errcheck // a test server
	sender, err := dispatch.NewSvixSender(dispatch.SvixConfig{
		Token: svixfake.DefaultToken, ServerURL: fake.URL(), MaxConns: b.opts.concurrency,
	})
	if err != nil {
		return res, fmt.Errorf("svix sender: %w", err)
	}
	// The rows of a realistic backlog: 8 apps, data as producers write it.
	msgs := make([]dispatch.Message, n)
	for i := range msgs {
		data, err := json.Marshal(map[string]string{"entity_id": "ent_" + strconv.Itoa(i), "asset_id": "asset_" + strconv.Itoa(i/6)})
		if err != nil {
			return res, err
		}
		msgs[i] = dispatch.Message{AppID: "noop-app-" + strconv.Itoa(i%8), EventType: "render.completed", Data: data, Key: "noop_" + strconv.Itoa(i)}
	}

	m, err := b.mark()
	if err != nil {
		return res, err
	}
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(b.opts.concurrency, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if _, err := sender.Send(ctx, msgs[i]); err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed.Load() > 0 {
		return res, fmt.Errorf("svix no-op: %d of %d sends failed, the first: %w", failed.Load(), n, firstErr)
	}
	res.Usage = b.usageSince(m, relayproc.Usage{}, n)
	res.Seconds = elapsed.Seconds()
	res.RowsPerSec = float64(n) / elapsed.Seconds()
	res.Status, res.Messages = statusMap(fake), fake.MessageCount()
	res.Delivered, res.Complete = res.Messages, res.Messages == n
	return res, nil
}

// ceiling is the rate of rows that each cost this machine one River no-op
// job (river, jobs/s) and one send (svix, sends/s): where the CPU is the
// limit, costs per row add, so 1 / (1/river + 1/svix). The relay's work
// around a send (numbering, claiming, recording, its own bookkeeping) is
// not a River job, but at least as much database work: each row gets
// three new versions where a no-op job gets two.
func ceiling(river, svix float64) float64 {
	if river <= 0 || svix <= 0 {
		return 0
	}
	return 1 / (1/river + 1/svix)
}
