package svixfake

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
)

// limitedStrError applies the server's rule for uids, event type names and
// channels: 1 to 256 characters of [a-zA-Z0-9-_.]. "" means valid.
func limitedStrError(s string) string {
	switch {
	case s == "":
		return "String must be at least one character"
	case len(s) > 256:
		return "String too long"
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		ok := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_' || b == '.'
		if !ok {
			return `String must match the following pattern: [a-zA-Z0-9\-_.].`
		}
	}
	return ""
}

// uidErrors validates a uid (or eventId): a limited string that does not
// start with the id prefix of its kind.
func uidErrors(s, idPrefix string) []string {
	var msgs []string
	if msg := limitedStrError(s); msg != "" {
		msgs = append(msgs, msg)
	}
	if strings.HasPrefix(s, idPrefix) {
		msgs = append(msgs, "Uids are not allowed to have the same prefix as the ID. Prefix with _?")
	}
	return msgs
}

func channelErrors(channels []string, maxItems int, countMsg string) []fieldError {
	loc := []string{"body", "channels"}
	if len(channels) < 1 || len(channels) > maxItems {
		return []fieldError{{Loc: loc, Msg: countMsg, Type: typeValue}}
	}
	var errs []fieldError
	for _, ch := range channels {
		if msg := limitedStrError(ch); msg != "" {
			errs = append(errs, fieldError{Loc: loc, Msg: msg, Type: typeValue})
		}
	}
	return errs
}

func hasLowControlChars(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r <= 0x08 })
}

func missingField(name string) fieldError {
	return fieldError{Loc: []string{"body"}, Msg: "missing field `" + name + "`", Type: typeJSONDecode}
}

func decodeMessageIn(body []byte) (*messageIn, []fieldError) {
	var in messageIn
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, decodeError(err)
	}
	return &in, nil
}

// decodeError turns a JSON decoding error into the server's 422 item.
func decodeError(err error) []fieldError {
	loc := []string{"body"}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		loc = append(loc, strings.Split(te.Field, ".")...)
	}
	return []fieldError{{Loc: loc, Msg: err.Error(), Type: typeJSONDecode}}
}

func dedupe(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, 0, len(in))
	for _, v := range in {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
