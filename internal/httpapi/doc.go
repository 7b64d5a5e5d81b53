// Package httpapi holds what relay's public HTTP surfaces share: the error
// envelope and the one writer that renders it, request ids, authentication
// (over any apikey.Authenticator), per-key rate limits, JSON decoding with a
// size cap, the access log and panic recovery. The endpoint API (package
// endpoints) and the live stream build on it; it knows nothing of either.
//
// Handlers return errors (HandlerFunc); only WriteError writes an error
// body, as
//
//	{"error": {"type", "code", "message", "param", "request_id"}}
//
// Every response carries X-Request-Id, the envelope's request_id. The
// middleware is func(http.Handler) http.Handler, one per file, composed in
// this order, outermost first: RequestID, AccessLog, Recover, then per
// route Authenticate and RateLimit.
package httpapi
