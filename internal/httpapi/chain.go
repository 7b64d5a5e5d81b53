package httpapi

import "net/http"

// Chain wraps h in mws, the first outermost.
func Chain(h http.Handler, mws ...func(http.Handler) http.Handler) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// NotFoundHandler answers 404 not_found for a path no route serves.
func NotFoundHandler() http.Handler {
	return HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return NotFound("No route for %s %s.", r.Method, r.URL.Path)
	})
}

// MethodNotAllowed answers 405 with Allow for a path served under other
// methods.
func MethodNotAllowed(allow string) http.Handler {
	return HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Allow", allow)
		return Invalid(http.StatusMethodNotAllowed, "method_not_allowed", "", "%s is not allowed here; allowed: %s.", r.Method, allow)
	})
}
