package endpoints_test

import (
	"net/http"

	"github.com/mediaplatform/relay/apikey"
)

// panicking is an Authenticator with a bug.
type panicking struct{}

func (panicking) Authenticate(*http.Request) (apikey.Principal, error) { panic("authenticator bug") }

// staticAuth lets every request act for acme.
type staticAuth struct{}

func (staticAuth) Authenticate(*http.Request) (apikey.Principal, error) {
	return apikey.Principal{AppID: "acme", KeyID: "static"}, nil
}
