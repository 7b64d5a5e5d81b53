package main

import (
	"encoding/json"
	"sync"

	"github.com/mediaplatform/relay/internal/svixfake"
)

// ledger checks each message the fake Svix accepts against the rows
// written: every row once, and the rows of each asset in the order they
// were committed. It keeps a bit per row and a counter per asset with
// rows in flight, so 10M rows cost about 1 MiB.
type ledger struct {
	mu         sync.Mutex
	rows       int64
	seen       []uint64
	messages   int64
	duplicates int64
	unknown    int64 // payloads that name no row of this run
	outOfOrder int64
	next       map[string]int // per app and asset: the nth expected next
}

func newLedger(rows int64) *ledger {
	return &ledger{rows: rows, seen: make([]uint64, (rows+63)/64), next: map[string]int{}}
}

// payload is what the ledger reads of a message: the relay's body
// {"type", "data"} with the soak's keys in data.
type payload struct {
	Data struct {
		AssetID string `json:"asset_id"`
		Row     *int64 `json:"soak_row"`
		Nth     int    `json:"soak_nth"`
		Of      int    `json:"soak_of"`
	} `json:"data"`
}

// onMessage is the fake's Config.OnMessage.
func (l *ledger) onMessage(m svixfake.Message) {
	var p payload
	err := json.Unmarshal(m.Payload, &p)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.messages++
	if err != nil || p.Data.Row == nil || *p.Data.Row < 0 || *p.Data.Row >= l.rows {
		l.unknown++
		return
	}
	row := *p.Data.Row
	w, bit := row/64, uint64(1)<<(row%64)
	if l.seen[w]&bit != 0 {
		l.duplicates++
		return
	}
	l.seen[w] |= bit
	key := m.AppUID + "/" + p.Data.AssetID
	if p.Data.Nth != l.next[key] {
		l.outOfOrder++
	}
	if p.Data.Nth+1 >= p.Data.Of {
		delete(l.next, key)
	} else {
		l.next[key] = p.Data.Nth + 1
	}
}

// ledgerCounts is the ledger at a moment.
type ledgerCounts struct {
	messages, delivered, duplicates, unknown, outOfOrder, missing int64
}

func (l *ledger) counts() ledgerCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := ledgerCounts{messages: l.messages, duplicates: l.duplicates, unknown: l.unknown, outOfOrder: l.outOfOrder}
	c.delivered = l.messages - l.duplicates - l.unknown
	c.missing = l.rows - c.delivered
	return c
}

// delivered is how many rows have reached Svix (once).
func (l *ledger) delivered() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.messages - l.duplicates - l.unknown
}
