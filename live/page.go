package live

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/mediaplatform/relay/outbox"
)

//go:embed page.html
var pageHTML string

// PageConfig configures Page.
type PageConfig struct {
	// Types are the event types the page listens for (EventSource
	// dispatches named events to their own listeners); default every type
	// of outbox.EventTypes.
	Types []string
	// RefreshURL is POSTed (with the page's cookies) when the stream
	// refuses the session (its token expired): the product's endpoint that
	// mints a new token and sets the session cookie. The page then reopens
	// the stream from the last id it saw.
	RefreshURL string
}

// Page returns a minimal first-party page: about a dozen lines of
// JavaScript that open the stream with EventSource and the session cookie,
// list each event, resume after reconnects and refresh an expired
// session. Products copy it; relay serve and the demo serve it.
func Page(cfg PageConfig) http.Handler {
	if cfg.Types == nil {
		for _, t := range outbox.EventTypes {
			cfg.Types = append(cfg.Types, string(t))
		}
	}
	types, _ := json.Marshal(cfg.Types)
	refresh, _ := json.Marshal(cfg.RefreshURL)
	// Both values are JSON, safe inside a script element once "</" is
	// escaped.
	esc := func(b []byte) string { return strings.ReplaceAll(string(b), "</", `<\/`) }
	body := strings.Replace(pageHTML, "<script>", "<script>\nconst TYPES = "+esc(types)+", REFRESH_URL = "+esc(refresh)+";", 1)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; connect-src 'self'")
		_, _ = w.Write([]byte(body))
	})
}
