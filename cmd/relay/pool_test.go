package main

import (
	"context"
	"testing"
)

func TestPoolApplicationName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ url, want string }{
		{"postgres://u@127.0.0.1:1/db", "relay"},
		{"postgres://u@127.0.0.1:1/db?application_name=relay-eu-1", "relay-eu-1"},
	} {
		g := Globals{DatabaseURL: tt.url}
		pool, err := g.pool(context.Background(), 4) // connects lazily: nothing listens on port 1
		if err != nil {
			t.Fatal(err)
		}
		got := pool.Config().ConnConfig.RuntimeParams["application_name"]
		pool.Close()
		if got != tt.want {
			t.Errorf("%s: application_name %q, want %q", tt.url, got, tt.want)
		}
	}
}
