package endpoints

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mediaplatform/relay/internal/httpapi"
)

// Paging: limit is 1 to MaxLimit, DefaultLimit when absent.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// page is a list request's paging parameters.
type page struct {
	limit    int
	iterator string // Svix's iterator; "" for the first page
}

// parsePage reads ?limit= and ?cursor=. The cursor is Svix's iterator (the
// last endpoint id of the previous page) in base64url, opaque to clients;
// it is meaningful only within the account it came from, and harmless in
// another (Svix scopes the listing by application).
func parsePage(q url.Values) (page, error) {
	p := page{limit: DefaultLimit}
	if vs, ok := q["limit"]; ok {
		n, err := strconv.Atoi(vs[0])
		if err != nil || n < 1 || n > MaxLimit || len(vs) > 1 {
			return page{}, httpapi.Invalid(http.StatusBadRequest, "invalid_limit", "limit", "limit must be a whole number from 1 to %d, got %q.", MaxLimit, vs[0])
		}
		p.limit = n
	}
	if vs, ok := q["cursor"]; ok {
		it, err := base64.RawURLEncoding.DecodeString(vs[0])
		if err != nil || !validEndpointID(string(it)) || len(vs) > 1 {
			return page{}, httpapi.Invalid(http.StatusBadRequest, "invalid_cursor", "cursor", "cursor is not one this API returned: pass next_cursor from the previous page unchanged.")
		}
		p.iterator = string(it)
	}
	return p, nil
}

func encodeCursor(iterator string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(iterator))
}

// validEndpointID reports whether id has the shape of a Svix endpoint id
// ("ep_" and base62), so that no other text reaches Svix's URL path.
func validEndpointID(id string) bool {
	rest, ok := strings.CutPrefix(id, "ep_")
	if !ok || len(rest) < 1 || len(rest) > 64 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
