package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mediaplatform/relay/live"
)

type stats struct {
	Count         int
	P50, P99, Max float64
}

// runClient opens o.streams streams spread over o.apps accounts, prints
// "ready" once each has its first frame, records the latency of every
// event (now minus data.sent_ns) and, when stdin closes, prints the
// stats as JSON.
func runClient(ctx context.Context, o options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var lat []float64
	type receipt struct {
		entity string
		at     int64
	}
	var got []receipt
	ready := make(chan error, o.streams)
	sem := make(chan struct{}, 200) // dials at once
	var conns []net.Conn
	var cmu sync.Mutex
	for i := range o.streams {
		app := fmt.Sprintf("bench-%d", i%o.apps)
		tok, err := live.Mint(secret, app, time.Hour)
		if err != nil {
			return err
		}
		go func() {
			sem <- struct{}{}
			c, r, err := dial(ctx, o.addr, tok)
			<-sem
			ready <- err
			if err != nil {
				return
			}
			cmu.Lock()
			conns = append(conns, c)
			cmu.Unlock()
			for {
				line, err := r.ReadSlice('\n')
				if err != nil {
					return
				}
				if i := strings.Index(string(line), `"sent_ns": `); i >= 0 {
					now := time.Now().UnixNano()
					rest := string(line[i+len(`"sent_ns": `):])
					j := strings.IndexAny(rest, ",}")
					sent, err := strconv.ParseInt(rest[:j], 10, 64)
					k := strings.Index(string(line), `"entity_id": "`)
					if err == nil && k >= 0 {
						e := string(line[k+len(`"entity_id": "`):])
						e = e[:strings.IndexByte(e, '"')]
						mu.Lock()
						lat = append(lat, float64(now-sent)/1e6)
						got = append(got, receipt{e, now})
						mu.Unlock()
					}
				}
			}
		}()
	}
	for range o.streams {
		if err := <-ready; err != nil {
			return fmt.Errorf("open stream: %w", err)
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
	cancel()
	cmu.Lock()
	for _, c := range conns {
		c.Close()
	}
	cmu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	for _, r := range got {
		fmt.Fprintf(w, "R %s %d\n", r.entity, r.at)
	}
	_ = w.Flush()
	slices.Sort(lat)
	st := stats{Count: len(lat)}
	if len(lat) > 0 {
		st.P50 = lat[len(lat)/2]
		st.P99 = lat[len(lat)*99/100]
		st.Max = lat[len(lat)-1]
	}
	b, _ := json.Marshal(st)
	fmt.Println(string(b))
	return nil
}

// dial opens one stream over a raw connection and reads up to its first
// frame.
func dial(ctx context.Context, addr, tok string) (net.Conn, *bufio.Reader, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(c, "GET /v1/live HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n", addr, tok)
	r := bufio.NewReaderSize(c, 4096)
	status, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if !strings.Contains(status, " 200 ") {
		c.Close()
		return nil, nil, fmt.Errorf("status %q", strings.TrimSpace(status))
	}
	// Headers, then the first frame (retry and the starting id).
	blank := 0
	for blank < 2 {
		line, err := r.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		if strings.TrimSpace(line) == "" || strings.TrimSpace(line) == "0" {
			blank++
		}
	}
	return c, r, nil
}
