package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxBodyBytes is the largest request body DecodeJSON reads (1 MiB).
const MaxBodyBytes = 1 << 20

// DecodeJSON reads r's body, at most MaxBodyBytes, into v, refusing
// fields v does not have. It answers:
//   - 413 request_too_large over the cap,
//   - 400 invalid_json for a body that is not one JSON object (empty,
//     malformed, null, another type or followed by more data),
//   - 400 unknown_field naming the field,
//   - 422 invalid_type naming the field whose JSON type is wrong.
//
// It returns the body's bytes, for idempotency checks.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &Error{Status: http.StatusRequestEntityTooLarge, Type: TypeInvalidRequest, Code: "request_too_large",
				Message: fmt.Sprintf("The request body is over %d bytes.", MaxBodyBytes)}
		}
		return nil, Invalid(http.StatusBadRequest, "invalid_body", "", "Could not read the request body.")
	}
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		// Decode takes null for "no value" and leaves v as it is.
		return nil, Invalid(http.StatusBadRequest, "invalid_json", "", "The request body must be a JSON object, got null.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, Invalid(http.StatusBadRequest, "invalid_json", "", "The request body must be a single JSON object; more data follows it.")
	}
	return body, nil
}

func decodeError(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return Invalid(http.StatusBadRequest, "invalid_json", "", "The request body must be a JSON object, got %s.", typeErr.Value)
		}
		return Invalid(http.StatusUnprocessableEntity, "invalid_type", typeErr.Field, "%s must be %s, got %s.", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return Invalid(http.StatusBadRequest, "invalid_json", "", "The request body is not valid JSON: %s (at byte %d).", strings.TrimPrefix(syntaxErr.Error(), "json: "), syntaxErr.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Invalid(http.StatusBadRequest, "invalid_json", "", "The request body is empty or cut short; send a JSON object.")
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field = strings.Trim(field, `"`)
		return Invalid(http.StatusBadRequest, "unknown_field", field, "Unknown field %q.", field)
	}
	return Invalid(http.StatusBadRequest, "invalid_json", "", "The request body is not valid JSON.")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "a boolean"
	}
	return "a number"
}
