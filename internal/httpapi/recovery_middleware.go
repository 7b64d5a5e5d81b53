package httpapi

import (
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"
)

// Recover turns a panic in a handler into a 500 envelope (when nothing has
// been written yet) and logs it with its stack and request id.
// http.ErrAbortHandler is passed on: it is how a handler drops a
// connection on purpose.
func Recover(log *zap.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(v)
				}
				log.Error("handler panicked", zap.String("request_id", RequestIDFrom(r.Context())), zap.Any("panic", v), zap.Stack("stack"))
				if rec, ok := w.(*statusRecorder); ok && rec.written() {
					panic(http.ErrAbortHandler) // too late for an envelope: drop the connection
				}
				WriteError(w, r, fmt.Errorf("panic: %v", v))
			}()
			next.ServeHTTP(w, r)
		})
	}
}
