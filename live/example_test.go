package live_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/live"
)

// A product mounts the stream in its own server, under its own origin, and
// signs its users in to it from its backend: the page's JavaScript never
// holds the token.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	secret := []byte(os.Getenv("RELAY_LIVE_SECRET"))
	stream, err := live.New(live.Config{DB: pool, Secret: secret})
	if err != nil {
		log.Fatal(err)
	}
	go stream.Run(ctx) //nolint:errcheck // returns nil when ctx ends

	mux := http.NewServeMux()
	mux.Handle(live.Path, stream)
	mux.Handle(live.Path+"/", stream)
	mux.HandleFunc("GET /editor", func(w http.ResponseWriter, r *http.Request) {
		account := "acme" // the signed-in user's account, from the product's session
		tok, err := live.Mint(secret, account, 15*time.Minute)
		if err == nil {
			err = stream.SetSessionCookie(w, tok)
		}
		if err != nil {
			http.Error(w, "live stream unavailable", http.StatusInternalServerError)
			return
		}
		// ... render the editor page, whose script opens
		// new EventSource("/v1/live?last_event_id=" + cursor)
	})
	srv := &http.Server{Addr: ":8443", Handler: mux}
	srv.RegisterOnShutdown(stream.Close) // streams never go idle on their own
	log.Fatal(srv.ListenAndServeTLS("cert.pem", "key.pem"))
}
