package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// RequestIDHeader carries the request id on every response.
const RequestIDHeader = "X-Request-Id"

type infoKey struct{}

// info is what the middleware learn about a request, for the access log.
// It is created by RequestID, the outermost middleware.
type info struct {
	id     string
	logged bool   // an AccessLog writes this request's line
	route  string // the ServeMux pattern, once routed
	appID  string // once authenticated
	err    *Error // the error answered, if any
}

func infoFrom(ctx context.Context) *info {
	i, _ := ctx.Value(infoKey{}).(*info)
	return i
}

// RequestIDFrom returns the request's id ("" outside RequestID).
func RequestIDFrom(ctx context.Context) string {
	if i := infoFrom(ctx); i != nil {
		return i.id
	}
	return ""
}

// SetAppID records the account a request acts for, for its access log
// line, when a handler authenticates the request itself (the live
// stream's token) rather than through Authenticate.
func SetAppID(ctx context.Context, appID string) {
	if i := infoFrom(ctx); i != nil {
		i.appID = appID
	}
}

// RequestID gives each request a new random id ("req_" and 24 hex
// digits), set on the response as X-Request-Id before anything else runs.
// An id sent by the client is ignored: ids are the server's, so a client
// cannot make two requests share one in the logs. Nested inside another
// RequestID (a handler mounted in a server that has one), it keeps the
// outer id.
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if infoFrom(r.Context()) != nil {
			next.ServeHTTP(w, r)
			return
		}
		i := &info{id: newRequestID()}
		w.Header().Set(RequestIDHeader, i.id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), infoKey{}, i)))
	})
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return "req_" + hex.EncodeToString(b[:])
}
