package pgtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediaplatform/relay/internal/pgtest"
)

func TestCluster(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	c := pgtest.StartCluster(t)

	connect := func(t *testing.T) *pgx.Conn {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.URL)
		if err != nil {
			t.Fatalf("connect to %s: %v", c.URL, err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}

	conn := connect(t)
	var fsync string
	if err := conn.QueryRow(ctx, `SHOW fsync`).Scan(&fsync); err != nil {
		t.Fatal(err)
	}
	if fsync != "off" {
		t.Errorf("fsync = %s, want off", fsync)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)`); err != nil {
		t.Fatal(err)
	}

	t.Run("RestartDropsConnectionsAndKeepsData", func(t *testing.T) {
		c.Restart(t)
		if err := conn.Ping(ctx); err == nil {
			t.Error("a connection made before the restart still answers")
		}
		var n int
		if err := connect(t).QueryRow(ctx, `SELECT n FROM kept`).Scan(&n); err != nil || n != 1 {
			t.Errorf("after restart: n=%d err=%v, want the committed row", n, err)
		}
	})

	t.Run("StopThenStart", func(t *testing.T) {
		c.Stop(t)
		c.Stop(t) // a no-op
		if conn, err := pgx.Connect(ctx, c.URL); err == nil {
			conn.Close(ctx)
			t.Fatal("connected to a stopped cluster")
		}
		c.Start(t)
		if err := connect(t).Ping(ctx); err != nil {
			t.Errorf("after start: %v", err)
		}
	})
}
