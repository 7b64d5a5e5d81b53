package svixfake_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/mediaplatform/relay/internal/svixfake"
)

// BenchmarkMessageCreate measures Message.Create through the real client
// on loopback, in parallel, with the request log off as a load test would.
func BenchmarkMessageCreate(b *testing.B) {
	srv, err := svixfake.New(svixfake.Config{MaxRecordedRequests: -1})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	u, _ := url.Parse(srv.URL())
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	defer tr.CloseIdleConnections()
	client, err := svix.New(svixfake.DefaultToken, &svix.SvixOptions{
		ServerUrl:     u,
		HTTPClient:    &http.Client{Transport: tr},
		RetrySchedule: &[]time.Duration{},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	app := "bench-app"
	if _, err := client.Application.GetOrCreate(ctx, models.ApplicationIn{Name: app, Uid: &app}, nil); err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := "row-" + strconv.FormatInt(seq.Add(1), 10)
			_, err := client.Message.Create(ctx, app, models.MessageIn{
				EventType: "asset.ready",
				EventId:   &id,
				Payload:   map[string]any{"asset_id": id, "size": 12345},
			}, &svix.MessageCreateOptions{IdempotencyKey: &id})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if got := srv.MessageCount(); int64(got) != seq.Load() {
		b.Errorf("messages = %d, want %d", got, seq.Load())
	}
}

// BenchmarkServeHTTP measures the fake's own cost per message create,
// without sockets or the client.
func BenchmarkServeHTTP(b *testing.B) {
	srv, err := svixfake.New(svixfake.Config{MaxRecordedRequests: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()
	create := func(path, body, key string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+svixfake.DefaultToken)
		r.Header.Set("Content-Type", "application/json")
		if key != "" {
			r.Header.Set("Idempotency-Key", key)
		}
		return r
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, create("/api/v1/app", `{"name":"bench","uid":"bench"}`, ""))
	if w.Code != http.StatusCreated {
		b.Fatalf("create app: %d %s", w.Code, w.Body)
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := strconv.FormatInt(seq.Add(1), 10)
			body := `{"eventId":"row-` + id + `","eventType":"asset.ready","payload":{"asset_id":"a-` + id + `","size":12345}}`
			w := httptest.NewRecorder()
			h.ServeHTTP(w, create("/api/v1/app/bench/msg?with_content=false", body, "row-"+id))
			if w.Code != http.StatusAccepted {
				b.Errorf("create: %d %s", w.Code, w.Body)
				return
			}
		}
	})
}
