package httpapi

import "net/http"

// Routed records the ServeMux pattern that matched, for the access log;
// wrap each registered handler with it.
func Routed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := infoFrom(r.Context()); i != nil {
			i.route = r.Pattern
		}
		next.ServeHTTP(w, r)
	})
}
