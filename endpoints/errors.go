package endpoints

import (
	"errors"

	"github.com/mediaplatform/relay/internal/httpapi"
)

func asError(err error, target **httpapi.Error) bool { return err != nil && errors.As(err, target) }
