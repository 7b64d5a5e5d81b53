package endpoints_test

import (
	"net/http"

	"github.com/mediaplatform/relay/apikey"
)

// panicking is an Authenticator with a bug.
type panicking struct{}

func (panicking) Authenticate(*http.Request) (apikey.Principal, error) { panic("authenticator bug") }
