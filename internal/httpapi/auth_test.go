package httpapi

import (
	"net/http"

	"github.com/mediaplatform/relay/apikey"
)

type staticAuth struct{}

func (staticAuth) Authenticate(*http.Request) (apikey.Principal, error) {
	return apikey.Principal{AppID: "acme", KeyID: "key_1"}, nil
}
