package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/mediaplatform/relay/apikey"
)

type principalKey struct{}

// PrincipalFrom returns the principal Authenticate found.
func PrincipalFrom(ctx context.Context) (apikey.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(apikey.Principal)
	return p, ok
}

// Authenticate lets a request through only when auth accepts it, with the
// principal in its context (PrincipalFrom) and its app_id in the access
// log. apikey.ErrUnauthenticated answers 401 with WWW-Authenticate: Bearer;
// any other failure of auth (its database down) answers 503.
func Authenticate(auth apikey.Authenticator) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := auth.Authenticate(r)
			switch {
			case errors.Is(err, apikey.ErrUnauthenticated):
				WriteError(w, r, &Error{
					Status: http.StatusUnauthorized, Type: TypeAuthentication, Code: "unauthenticated",
					Message: "Missing or invalid API key: send Authorization: Bearer <your API key>.",
				})
				return
			case err != nil:
				WriteError(w, r, Unavailable(http.StatusServiceUnavailable, TypeAPI, "authentication_unavailable", time.Second, err,
					"Could not check the API key; retry shortly."))
				return
			case p.AppID == "":
				WriteError(w, r, errors.New("authenticator returned a principal without an app id"))
				return
			}
			if i := infoFrom(r.Context()); i != nil {
				i.appID = p.AppID
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
		})
	}
}
