package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
)

// Limits on a row, the same in Go and in the database's trigger.
const (
	MaxAppIDLength = 256   // characters
	MaxDataBytes   = 65536 // bytes of data as jsonb text (data::text)
	MaxDataDepth   = 32    // levels below the top of data
	MaxIDLength    = 256   // characters of data.entity_id and data.asset_id
)

// ValidationError is a row the outbox refuses, from Validate or from the
// database. Rule is a stable name (the database error's CONSTRAINT field):
// app_id_required, app_id_length, app_id_charset, app_id_prefix,
// event_type_required, event_type_known, data_required, data_json,
// data_object, data_size, data_depth, data_entity_id, data_asset_id,
// data_previous_state, relay_owned.
type ValidationError struct {
	Field   string // e.g. "app_id", "data.previous_state"
	Rule    string
	Message string // names the field and the rule, e.g. "outbox.data.asset_id must be a non-empty string"

	pgErr *pgconn.PgError // set when the database refused the row
}

func (e *ValidationError) Error() string { return e.Message }

// Unwrap returns the database's error when the database refused the row.
func (e *ValidationError) Unwrap() error {
	if e.pgErr == nil {
		return nil
	}
	return e.pgErr
}

func invalid(field, rule, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Rule: rule, Message: "outbox." + field + " " + fmt.Sprintf(format, args...)}
}

// Validate reports whether the database would accept ev, with the same rule
// the database would name, against the catalog the package ships with
// (EventTypes). Emit and EmitBatch are more lenient about types: adding a
// type is a migration that inserts a row into outbox_event_type, and they
// let the database decide on a type this package does not know (see Emit).
func Validate(ev Event) error { return validate(ev, false) }

// validate is Validate; with dbDecidesType, a type missing from EventTypes
// is left to the database's catalog (which a migration may have extended)
// and only the rules that do not depend on the type are checked here.
func validate(ev Event, dbDecidesType bool) error {
	if err := validateAppID(ev.AppID); err != nil {
		return err
	}
	if !slices.Contains(EventTypes, ev.Type) && !(dbDecidesType && sendable(string(ev.Type))) {
		names := make([]string, len(EventTypes))
		for i, t := range EventTypes {
			names[i] = string(t)
		}
		return invalid("event_type", "event_type_known", "must be one of %s, got %s", strings.Join(names, ", "), quote(string(ev.Type)))
	}
	return validateData(ev.Type, ev.Data)
}

// sendable reports whether s can reach the database as text at all (not
// empty, valid UTF-8, no NUL), so that the database can judge it.
func sendable(s string) bool {
	return s != "" && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

func validateAppID(appID string) error {
	if n := utf8.RuneCountInString(appID); n < 1 || n > MaxAppIDLength {
		return invalid("app_id", "app_id_length", "must be 1 to %d characters long, got %d", MaxAppIDLength, n)
	}
	for i := 0; i < len(appID); i++ {
		c := appID[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return invalid("app_id", "app_id_charset", `must contain only A-Z, a-z, 0-9, "-", "_" and ".", got %s`, quote(appID))
		}
	}
	for _, prefix := range []string{"app_", "ep_", "msg_"} {
		if strings.HasPrefix(appID, prefix) {
			return invalid("app_id", "app_id_prefix", `must not start with "app_", "ep_" or "msg_", got %s`, quote(appID))
		}
	}
	return nil
}

func validateData(typ EventType, data json.RawMessage) error {
	if data == nil {
		return invalid("data", "data_required", "must not be null")
	}
	info, err := scanJSONB(data)
	if err != nil {
		return invalid("data", "data_json", "must be valid JSON: %v", err)
	}
	if info.Kind != "object" {
		return invalid("data", "data_object", "must be a JSON object, got %s", info.Kind)
	}
	if info.TextLen > MaxDataBytes {
		return invalid("data", "data_size", "must be at most %d bytes as JSON text, got %d", MaxDataBytes, info.TextLen)
	}
	if info.MaxLevel > MaxDataDepth {
		return invalid("data", "data_depth", "must not nest values more than %d levels deep", MaxDataDepth)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return invalid("data", "data_json", "must be valid JSON: %v", err)
	}
	for _, name := range []string{"entity_id", "asset_id"} {
		if s, ok := jsonString(fields[name]); !ok || s == "" || utf8.RuneCountInString(s) > MaxIDLength {
			return invalid("data."+name, "data_"+name, "must be a non-empty string of at most %d characters", MaxIDLength)
		}
	}
	if allowed, ok := previousStates[typ]; ok {
		s, isString := jsonString(fields["previous_state"])
		if !isString || !slices.Contains(allowed, PreviousState(s)) {
			names := make([]string, len(allowed))
			for i, p := range allowed {
				names[i] = string(p)
			}
			return invalid("data.previous_state", "data_previous_state", "must be one of %s for %s", strings.Join(names, ", "), typ)
		}
	}
	return nil
}

// jsonString decodes raw when it is a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// quote renders a bad value for a message, shortened like the database's.
func quote(s string) string {
	if utf8.RuneCountInString(s) > 64 {
		s = string([]rune(s)[:64])
	}
	return fmt.Sprintf("%q", s)
}

// fromPgError turns the trigger's refusal into a *ValidationError and
// returns any other error unchanged.
func fromPgError(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.TableName != "outbox" || pgErr.ConstraintName == "" {
		return err
	}
	field := pgErr.ColumnName
	if rest, ok := strings.CutPrefix(pgErr.Message, "outbox."); ok {
		if f, _, ok := strings.Cut(rest, " "); ok {
			field = f
		}
	}
	return &ValidationError{Field: field, Rule: pgErr.ConstraintName, Message: pgErr.Message, pgErr: pgErr}
}
