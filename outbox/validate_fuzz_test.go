package outbox_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/outbox"
)

// validateCase is one row offered to Validate and to the database.
type validateCase struct {
	name      string
	appID     string
	eventType string
	data      []byte // nil is SQL NULL
}

// validateCases cover every rule of the trigger, its edges, and the order in
// which the rules are checked.
func validateCases() []validateCase {
	const (
		app  = "acct_1"
		typ  = "cut.completed"
		good = `{"entity_id":"cut_1","asset_id":"asset_1"}`
	)
	// sized returns a valid object whose jsonb text is exactly n bytes.
	sized := func(n int) string {
		base := len(`{"pad": "", "asset_id": "a", "entity_id": "e"}`)
		return `{"entity_id":"e","asset_id":"a","pad":"` + strings.Repeat("x", n-base) + `"}`
	}
	// nested returns a valid object whose deepest value is levels deep.
	nested := func(levels int) string {
		return `{"entity_id":"e","asset_id":"a","x":` + strings.Repeat("[", levels) + strings.Repeat("]", levels) + `}`
	}
	c := func(name, appID, eventType string, data string) validateCase {
		return validateCase{name, appID, eventType, []byte(data)}
	}
	return []validateCase{
		// Accepted.
		c("valid", app, typ, good),
		c("valid with extra keys", app, "render.failed", `{"entity_id":"r","asset_id":"a","reason":{"code":[1,2.50e1,null]}}`),
		c("valid asset.ready from processing", app, "asset.ready", `{"entity_id":"a","asset_id":"a","previous_state":"processing"}`),
		c("valid asset.ready from pending_payment", app, "asset.ready", `{"entity_id":"a","asset_id":"a","previous_state":"pending_payment"}`),
		c("valid every type: cut.failed", app, "cut.failed", good),
		c("valid every type: render.completed", app, "render.completed", good),
		c("valid every type: render.cancelled", app, "render.cancelled", good),
		c("valid every type: asset.pending_payment", app, "asset.pending_payment", good),
		c("valid every type: asset.failed", app, "asset.failed", good),
		c("previous_state ignored by other types", app, "asset.failed", `{"entity_id":"a","asset_id":"a","previous_state":7}`),
		c("app_id of one character", "a", typ, good),
		c("app_id of 256 characters", strings.Repeat("a", 256), typ, good),
		c("app_id with every allowed class", "Az09._-", typ, good),
		c("app_id like a prefix", "app", typ, good),
		c("app_id with a capital prefix", "App_1", typ, good),
		c("app_id with a dash prefix", "app-1", typ, good),
		c("app_id with the prefix inside", "x_app_1", typ, good),
		c("whitespace around data", app, typ, " \t\r\n"+good+"\n"),
		c("whitespace around keys and values", app, typ, "{ \"entity_id\" : \"e\" ,\n\"asset_id\"\t:\r\"a\" }"),
		c("escaped keys", app, typ, `{"\u0065ntity_id":"e","asset\u005fid":"a"}`),
		c("non-ASCII ids", app, typ, `{"entity_id":"\u00e9","asset_id":"😀"}`),
		c("ids of one space", app, typ, `{"entity_id":" ","asset_id":" "}`),
		c("duplicate key: last value non-empty", app, typ, `{"entity_id":"","entity_id":"e","asset_id":"a"}`),
		c("data of 65536 bytes", app, typ, sized(65536)),
		c("data above 65536 bytes as sent, less as jsonb", app, typ, `{"entity_id":"e","asset_id":"a"}`+strings.Repeat(" ", 70000)),
		c("data above 65536 bytes as sent, less decoded", app, typ, `{"entity_id":"e","asset_id":"a","s":"`+strings.Repeat(`\u00e9`, 12000)+`"}`),
		c("big value dropped as a duplicate", app, typ, `{"pad":"`+strings.Repeat("x", 70000)+`","pad":1,"entity_id":"e","asset_id":"a"}`),
		c("32 levels", app, typ, nested(32)),
		c("deep value dropped as a duplicate", app, typ, `{"entity_id":"e","asset_id":"a","x":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`,"x":1}`),
		c("big exact numbers", app, typ, `{"entity_id":"e","asset_id":"a","n":[9007199254740993,1e100,-0.0,123.456e-10]}`),

		// app_id_length.
		c("app_id empty", "", typ, good),
		c("app_id of 257 characters", strings.Repeat("a", 257), typ, good),
		c("app_id of 257 two-byte characters", strings.Repeat("é", 257), typ, good),
		c("app_id of 200 two-byte characters", strings.Repeat("é", 200), typ, good), // charset, not length
		// app_id_charset.
		c("app_id with a space", "a b", typ, good),
		c("app_id with a slash", "a/b", typ, good),
		c("app_id with a newline at the end", "ab\n", typ, good),
		c("app_id non-ASCII", "é", typ, good),
		c("app_id with a colon", "acct:1", typ, good),
		c("app_id with a percent", "a%", typ, good),
		c("app_id with a NUL", "a\x00b", typ, good), // cannot be sent: Go alone
		c("app_id not UTF-8", "a\xffb", typ, good),  // cannot be sent: Go alone
		c("app_id not UTF-8, long", strings.Repeat("\xff", 300), typ, good),
		// app_id_prefix.
		c("app_id app_", "app_1", typ, good),
		c("app_id ep_", "ep_1", typ, good),
		c("app_id msg_", "msg_1", typ, good),
		c("app_id just the prefix", "msg_", typ, good),

		// event_type_known.
		c("event_type empty", app, "", good),
		c("event_type unknown", app, "cut.started", good),
		c("event_type in capitals", app, "Cut.Completed", good),
		c("event_type with a space", app, "cut.completed ", good),
		c("event_type with a NUL", app, "cut.completed\x00", good), // Go alone
		c("event_type not UTF-8", app, "cut.\xff", good),           // Go alone

		// data_required.
		{"data NULL", app, typ, nil},

		// data_json: the server will not parse it.
		c("data empty", app, typ, ""),
		c("data whitespace", app, typ, " "),
		c("data truncated", app, typ, `{"entity_id":"e"`),
		c("data trailing comma", app, typ, `{"entity_id":"e","asset_id":"a",}`),
		c("data single quotes", app, typ, `{'entity_id':'e'}`),
		c("data NUL escape", app, typ, `{"entity_id":"\u0000","asset_id":"a"}`),
		c("data lone surrogate", app, typ, `{"entity_id":"\ud800","asset_id":"a"}`),
		c("data raw NUL", app, typ, "{\"entity_id\":\"e\",\"asset_id\":\"a\"}\x00"),
		c("data not UTF-8", app, typ, "{\"entity_id\":\"\xff\",\"asset_id\":\"a\"}"),
		c("data number scale too large", app, typ, `{"entity_id":"e","asset_id":"a","n":1e-17000}`),
		c("data number too large", app, typ, `{"entity_id":"e","asset_id":"a","n":1e131072}`),
		c("data NaN", app, typ, `{"entity_id":"e","asset_id":"a","n":NaN}`),
		c("data leading zero", app, typ, `{"entity_id":"e","asset_id":"a","n":01}`),
		c("data two values", app, typ, good+good),
		// The server parses data before the trigger runs, so data_json
		// outranks the app_id and event_type rules there; Go checks those
		// first. Either refusal is right.
		c("bad app_id and bad JSON", "app_1", typ, `{`),
		c("bad event_type and bad JSON", app, "nope", `{`),

		// data_object.
		c("data array", app, typ, `[{"entity_id":"e","asset_id":"a"}]`),
		c("data string", app, typ, `"e"`),
		c("data number", app, typ, `1`),
		c("data JSON null", app, typ, `null`),
		c("data true", app, typ, `true`),

		// data_size.
		c("data of 65537 bytes", app, typ, sized(65537)),
		c("data small as sent, big as jsonb", app, typ, `{"entity_id":"e","asset_id":"a","n":1e70000}`),
		c("data big by escaped controls", app, typ, `{"entity_id":"e","asset_id":"a","s":"`+strings.Repeat(`\u0001\b`, 8200)+`"}`),

		// data_depth.
		c("33 levels", app, typ, nested(33)),
		c("33 levels in objects", app, typ, strings.Repeat(`{"entity_id":"e","asset_id":"a","x":`, 33)+`1`+strings.Repeat(`}`, 33)),
		c("deep value kept as the last duplicate", app, typ, `{"entity_id":"e","asset_id":"a","x":1,"x":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`}`),
		c("1000 levels", app, typ, nested(1000)),
		c("size before depth", app, typ, `{"entity_id":"e","asset_id":"a","n":1e70000,"x":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`}`),

		// data_entity_id.
		c("entity_id missing", app, typ, `{"asset_id":"a"}`),
		c("entity_id empty", app, typ, `{"entity_id":"","asset_id":"a"}`),
		c("entity_id a number", app, typ, `{"entity_id":1,"asset_id":"a"}`),
		c("entity_id null", app, typ, `{"entity_id":null,"asset_id":"a"}`),
		c("entity_id an object", app, typ, `{"entity_id":{},"asset_id":"a"}`),
		c("entity_id nested", app, typ, `{"x":{"entity_id":"e"},"asset_id":"a"}`),
		c("entity_id in capitals", app, typ, `{"Entity_id":"e","asset_id":"a"}`),
		c("entity_id: last duplicate empty", app, typ, `{"entity_id":"e","entity_id":"","asset_id":"a"}`),
		c("entity_id empty object", app, typ, `{}`),
		c("entity_id before asset_id", app, typ, `{"entity_id":"","asset_id":""}`),
		// data_asset_id.
		c("asset_id missing", app, typ, `{"entity_id":"e"}`),
		c("asset_id empty", app, typ, `{"entity_id":"e","asset_id":""}`),
		c("asset_id false", app, typ, `{"entity_id":"e","asset_id":false}`),
		c("asset_id an array", app, typ, `{"entity_id":"e","asset_id":["a"]}`),
		c("asset_id: last duplicate a number", app, typ, `{"entity_id":"e","asset_id":"a","asset_id":2}`),
		c("asset_id of 256 characters", app, typ, `{"entity_id":"e","asset_id":"`+strings.Repeat("é", 256)+`"}`),
		c("asset_id of 257 characters", app, typ, `{"entity_id":"e","asset_id":"`+strings.Repeat("a", 257)+`"}`),
		c("asset_id of 3000 incompressible characters", app, typ, `{"entity_id":"e","asset_id":"`+incompressible(3000)+`"}`),
		c("entity_id of 257 characters", app, typ, `{"entity_id":"`+strings.Repeat("é", 257)+`","asset_id":"a"}`),
		// data_previous_state.
		c("previous_state missing", app, "asset.ready", `{"entity_id":"a","asset_id":"a"}`),
		c("previous_state unknown", app, "asset.ready", `{"entity_id":"a","asset_id":"a","previous_state":"ready"}`),
		c("previous_state in capitals", app, "asset.ready", `{"entity_id":"a","asset_id":"a","previous_state":"Processing"}`),
		c("previous_state empty", app, "asset.ready", `{"entity_id":"a","asset_id":"a","previous_state":""}`),
		c("previous_state a number", app, "asset.ready", `{"entity_id":"a","asset_id":"a","previous_state":1}`),
		c("previous_state an array", app, "asset.ready", `{"entity_id":"a","asset_id":"a","previous_state":["processing"]}`),
		c("previous_state escaped", app, "asset.ready", `{"entity_id":"a","asset_id":"a","previous_state":"process\u0069ng"}`),
		c("previous_state with a space", app, "asset.ready", `{"entity_id":"a","asset_id":"a","previous_state":"processing "}`),

		// Rule order: the first failing rule is named.
		c("length before event_type", "", "nope", `[]`),
		c("charset before prefix", "app_ x", typ, good),
		c("prefix before event_type", "ep_1", "nope", good),
		c("event_type before data", app, "nope", `[]`),
		c("object before ids", app, typ, `[]`),
		c("ids before previous_state", app, "asset.ready", `{"asset_id":"a"}`),
	}
}

func TestValidateAgreesWithDatabase(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)

	for _, tt := range validateCases() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkValidate(t, pool, tt.appID, tt.eventType, tt.data)
		})
	}
}

func FuzzValidate(f *testing.F) {
	for _, tt := range validateCases() {
		f.Add(tt.appID, tt.eventType, tt.data)
	}
	pool := pgtest.Pool(f)
	f.Fuzz(func(t *testing.T, appID, eventType string, data []byte) {
		checkValidate(t, pool, appID, eventType, data)
	})
}

// insertSQL is what a producer in any language runs (outbox's package doc),
// with data sent as text so that the server's own JSON parser sees it.
const insertSQL = `INSERT INTO outbox (app_id, event_type, data) VALUES ($1, $2, $3::text::jsonb) RETURNING id`

// checkValidate requires Validate and the database to give the same verdict
// on a row: both accept it, or both refuse it, naming the same rule when the
// database names one.
func checkValidate(t *testing.T, pool *pgxpool.Pool, appID, eventType string, data []byte) {
	t.Helper()
	ev := outbox.Event{AppID: appID, Type: outbox.EventType(eventType), Data: data}
	goRule := ""
	if err := outbox.Validate(ev); err != nil {
		var verr *outbox.ValidationError
		if !errors.As(err, &verr) {
			t.Fatalf("Validate(%s) = %v, not a *ValidationError", describe(ev), err)
		}
		goRule = verr.Rule
	}

	// A string with a NUL or that is not UTF-8 cannot be sent as text (the
	// server refuses it with 22021 before any rule); Go must refuse it.
	if !sendable(appID) || !sendable(eventType) {
		if goRule == "" {
			t.Fatalf("Validate(%s) = nil for text PostgreSQL cannot receive", describe(ev))
		}
		return
	}

	dbRule, pgErr := insertRolledBack(t, pool, appID, eventType, data)
	switch {
	case goRule == "" && dbRule == "":
	case goRule == "":
		t.Fatalf("Validate(%s) = nil; the database refuses it: %s: %v (%s)", describe(ev), dbRule, pgErr, pgErr.Detail)
	case dbRule == "":
		t.Fatalf("Validate(%s) refuses it (%s); the database accepts it", describe(ev), goRule)
	case pgErr.Code[:2] == "23":
		if goRule != dbRule {
			t.Fatalf("Validate(%s) refuses it (%s); the database refuses it as %s: %v", describe(ev), goRule, dbRule, pgErr)
		}
	default:
		// The server refused data before the trigger ran: it parses the
		// row's values first, so data_json outranks every rule. Validate
		// checks app_id and event_type first, and, past the server's stack
		// depth or jsonb's 256 MB limits (class 54, not mirrored by
		// scanJSONB), may go on to measure the data.
		allowed := []string{"data_json", "app_id_length", "app_id_charset", "app_id_prefix", "event_type_known"}
		if pgErr.Code[:2] == "54" {
			allowed = append(allowed, "data_object", "data_size", "data_depth")
		}
		if !slices.Contains(allowed, goRule) {
			t.Fatalf("Validate(%s) refuses it (%s); the database cannot parse its data: %v (%s)", describe(ev), goRule, pgErr, pgErr.Detail)
		}
	}
}

// insertRolledBack inserts the row in a transaction it rolls back and
// returns the rule the database refused it by ("" when it accepts it):
// the CONSTRAINT field of a class 23 error, and data_json for data the
// server cannot take as jsonb (class 22: syntax, encoding, numeric range;
// class 54: nesting past its stack).
func insertRolledBack(t *testing.T, pool *pgxpool.Pool, appID, eventType string, data []byte) (string, *pgconn.PgError) {
	t.Helper()
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()

	var dataArg any // SQL NULL when data is nil, as pgx sends a nil json.RawMessage
	if data != nil {
		dataArg = string(data)
	}
	var id int64
	err = tx.QueryRow(ctx, insertSQL, appID, eventType, dataArg).Scan(&id)
	if err == nil {
		return "", nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("insert: %v", err)
	}
	switch pgErr.Code[:2] {
	case "23":
		if pgErr.ConstraintName != "" {
			return pgErr.ConstraintName, pgErr
		}
	case "22", "54":
		return "data_json", pgErr
	}
	t.Fatalf("insert: %v (SQLSTATE %s)", pgErr, pgErr.Code)
	return "", nil
}

func sendable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// describe renders a row for a failure message, long values shortened.
func describe(ev outbox.Event) string {
	short := func(s string) string {
		if len(s) > 120 {
			return strconv.Quote(s[:120]) + fmt.Sprintf("...(%d bytes)", len(s))
		}
		return strconv.Quote(s)
	}
	data := "nil"
	if ev.Data != nil {
		data = short(string(ev.Data))
	}
	return fmt.Sprintf("app_id %s, event_type %s, data %s", short(ev.AppID), short(string(ev.Type)), data)
}

// incompressible returns n hex digits that PostgreSQL cannot compress (an
// asset_id this long once got past Validate and failed on an index).
func incompressible(n int) string {
	var b strings.Builder
	x := uint32(2463534242)
	for b.Len() < n {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b.WriteByte("0123456789abcdef"[x%16])
	}
	return b.String()
}
