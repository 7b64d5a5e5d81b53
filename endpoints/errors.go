package endpoints

import (
	"errors"
	"net/http"
	"time"

	"github.com/mediaplatform/relay/internal/httpapi"
)

func asError(err error, target **httpapi.Error) bool { return err != nil && errors.As(err, target) }

// dbError answers a database failure as 503 with Retry-After: the
// database is a dependency like Svix, and a retry may well succeed.
func dbError(err error) error {
	return httpapi.Unavailable(http.StatusServiceUnavailable, httpapi.TypeAPI, "database_unavailable", 2*time.Second, err,
		"The service's database is unavailable; retry after the number of seconds in Retry-After.")
}
