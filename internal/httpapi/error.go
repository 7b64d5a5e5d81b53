package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Error types, the envelope's "type": what kind of failure, for a client
// deciding what to do.
const (
	TypeInvalidRequest = "invalid_request_error" // fix the request; retrying the same one fails again
	TypeAuthentication = "authentication_error"  // 401: the credentials
	TypeRateLimit      = "rate_limit_error"      // 429: retry after Retry-After
	TypeIdempotency    = "idempotency_error"     // an Idempotency-Key reused for another request, or still in use
	TypeAPI            = "api_error"             // 5xx: ours or upstream; retry after Retry-After
)

// Error is an answer other than 2xx. Handlers return it (or any error,
// which becomes a 500 whose cause is logged and never shown).
type Error struct {
	Status  int
	Type    string
	Code    string
	Message string
	// Param names the field, query parameter or header at fault, e.g.
	// "url" or "event_types[1]"; empty when none.
	Param string
	// RetryAfter, when positive, is sent as Retry-After (whole seconds,
	// rounded up).
	RetryAfter time.Duration
	// Err is the cause, for the access log; never sent to the client.
	Err error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Invalid is a request the client must fix: status 400 or 422, naming
// param.
func Invalid(status int, code, param, format string, args ...any) *Error {
	return &Error{Status: status, Type: TypeInvalidRequest, Code: code, Param: param, Message: fmt.Sprintf(format, args...)}
}

// NotFound is a 404 for a resource that does not exist or belongs to
// another account: the two are never told apart.
func NotFound(format string, args ...any) *Error {
	return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: "not_found", Message: fmt.Sprintf(format, args...)}
}

// Unavailable is a 5xx (or 429) the client should retry after retryAfter.
func Unavailable(status int, typ, code string, retryAfter time.Duration, cause error, format string, args ...any) *Error {
	return &Error{Status: status, Type: typ, Code: code, RetryAfter: retryAfter, Err: cause, Message: fmt.Sprintf(format, args...)}
}

type envelope struct {
	Error envelopeBody `json:"error"`
}

type envelopeBody struct {
	Type      string  `json:"type"`
	Code      string  `json:"code"`
	Message   string  `json:"message"`
	Param     *string `json:"param"`
	RequestID string  `json:"request_id"`
}

// WriteError renders err as the envelope. An error that is not an *Error
// becomes a 500 internal_error; its text goes to the access log only.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Type: TypeAPI, Code: "internal_error", Message: "The server failed to handle the request; it has been logged under the request id.", Err: err}
	}
	info := infoFrom(r.Context())
	if info != nil {
		info.err = e
	}
	h := w.Header()
	if e.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="relay"`)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	body := envelopeBody{Type: e.Type, Code: e.Code, Message: e.Message, RequestID: RequestIDFrom(r.Context())}
	if e.Param != "" {
		body.Param = &e.Param
	}
	WriteJSON(w, e.Status, envelope{Error: body})
}

// WriteJSON writes v as JSON with status (without HTML escaping: the
// answers are JSON for programs, not HTML).
func WriteJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only values of the API's own types reach here.
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":{"type":"api_error","code":"internal_error","message":"encode response","param":null,"request_id":""}}`)
	}
	WriteRawJSON(w, status, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// WriteRawJSON writes b, a JSON document, with status.
func WriteRawJSON(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// HandlerFunc is a handler that returns its failure instead of writing it.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// ServeHTTP runs f and renders its error with WriteError.
func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f(w, r); err != nil {
		WriteError(w, r, err)
	}
}
