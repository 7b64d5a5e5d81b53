package outbox

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
)

// jsonbCases are texts whose jsonb form is easy to get wrong. Each is cast
// to jsonb by the test database, which is the only oracle: the comments say
// what PostgreSQL 15 does, the test checks it.
var jsonbCases = []struct {
	name string
	in   string
}{
	// Scalars at the top level.
	{"null", `null`},
	{"true", `true`},
	{"false", `false`},
	{"string", `"a"`},
	{"empty string", `""`},
	{"zero", `0`},
	{"negative", `-12`},

	// Numbers come out as numeric_out renders them.
	{"big integer", `9007199254740993`},                          // not rounded to a float64
	{"huge integer", `123456789012345678901234567890123`},        // nor to an int64
	{"exponent", `1E2`},                                          // 100
	{"exponent with fraction", `1.0e2`},                          // 100
	{"trailing zero kept", `1.50e1`},                             // 15.0
	{"negative exponent", `123.456e-10`},                         // 0.0000000123456
	{"exponent plus sign", `1e+5`},                               // 100000
	{"exponent zero", `1E-0`},                                    // 1
	{"exponent leading zeros", `1e0000000000000000000000000002`}, // 100
	{"negative zero", `-0`},                                      // 0
	{"negative zero with fraction", `-0.0`},                      // 0.0
	{"negative zero with exponent", `-0e5`},                      // 0
	{"zero with fraction", `0.000`},                              // 0.000
	{"negative fraction", `-1e-2`},                               // -0.01
	{"fraction", `0.5`},                                          // 0.5
	{"leading zeros of a fraction", `0.00012`},                   // 0.00012
	{"fraction shifted", `0.00012e3`},                            // 0.12
	{"fraction shifted past the point", `0.00012e7`},             // 1200
	{"many fraction digits", `1.000000000000000000000000000001`},
	{"largest scale", `1e-16383`},         // 16383 fraction digits
	{"largest scale of zero", `0e-16383`}, // 0.000...0
	{"largest scale with digits", `1.5e-16382`},
	{"scale too large", `1e-17000`},           // value overflows numeric format
	{"scale too large by one", `1.5e-16383`},  // value overflows numeric format
	{"zero with scale too large", `0e-20000`}, // value overflows numeric format
	{"zero with scale 16384", `0e-16384`},     // value overflows numeric format
	{"largest weight", `1e131071`},            // 131072 integer digits
	{"largest weight from a fraction", `0.5e131072`},
	{"largest weight with digits", `99e131070`},
	{"weight too large", `1e131072`}, // value overflows numeric format
	{"weight too large by digits", `10e131071`},
	{"zero with a huge exponent", `0e1073741822`},       // 0
	{"exponent at INT_MAX/2", `0e1073741823`},           // value overflows numeric format
	{"negative exponent at INT_MAX/2", `0e-1073741823`}, // value overflows numeric format
	{"exponent beyond int64", `0e99999999999999999999999`},
	{"huge exponent", `1e1073741822`},
	{"scale 1001", `1e-1001`}, // above NUMERIC_MAX_DISPLAY_SCALE, still accepted

	// Numbers the JSON lexer refuses.
	{"trailing point", `1.`},
	{"leading point", `.1`},
	{"plus sign", `+1`},
	{"leading zero", `01`},
	{"negative leading zero", `-01`},
	{"letter after a number", `1a`},
	{"NaN", `NaN`},
	{"Infinity", `Infinity`},
	{"minus alone", `-`},
	{"minus space", `- 1`},
	{"exponent without digits", `1e`},
	{"exponent sign without digits", `1e+`},
	{"hex", `0x10`},
	{"two points", `1.2.3`},

	// Objects: keys deduplicated, the last value wins, keys sorted by length
	// and then bytes; neither changes what is measured except dropping.
	{"empty object", `{}`},
	{"empty array", `[]`},
	{"object", `{"a":1,"b":[true,false,null]}`},
	{"duplicate keys", `{"b":1,"a":2,"aa":3,"a":4,"B":5}`}, // {"B": 5, "a": 4, "b": 1, "aa": 3}
	{"duplicate key drops a deep value", `{"a":[[[1]]],"a":1}`},
	{"duplicate key keeps a deep value", `{"a":1,"a":[[[1]]]}`},
	{"duplicate key by escape", `{"\u0061":1,"a":2}`},
	{"duplicate key by solidus escape", `{"\/":1,"/":22}`},
	{"not a duplicate: case", `{"a":1,"A":2}`},
	{"duplicates in nested objects", `{"x":{"a":1,"a":2},"y":{"a":3},"x":{"b":{"c":1,"c":{}}}}`},
	{"empty key", `{"":1,"":2}`},
	{"array of objects", `[{"a":1},{"a":2,"a":3},{}]`},

	// Levels as jsonpath's strict $.**{N} counts them.
	{"nested objects", `{"a":{"b":1}}`}, // 2
	{"nested arrays", `[[]]`},           // 1
	{"deep mixed", `{"a":[1,[2,[3]]]}`}, // 4
	{"array in array of objects", `[{"a":[]}]`},

	// Whitespace: space, tab, newline, carriage return, nothing else.
	{"whitespace", " \t\n\r[1 ,2] \r\n"},
	{"whitespace in an object", "{ \"a\" : 1 , \"b\" :\t[ ] }"},
	{"form feed", "\f1"},
	{"vertical tab", "\v1"},
	{"trailing form feed", "1\f"},
	{"no-break space", "\u00a01"},
	{"byte order mark", "\ufeff1"},

	// Strings: escapes decoded, then escaped again as escape_json does.
	{"escapes", `"\"\\\/\b\f\n\r\t"`},                 // "\"\\/\b\f\n\r\t"
	{"control escapes", `"\u0001\u001f\u001F\u000b"`}, // "\u0001\u001f\u001f\u000b"
	{"escaped short forms", `"\u0008\u000c\u000a\u000d\u0009\u0022\u005c"`},
	{"escaped ASCII", `"\u0041\u002f"`},           // "A/"
	{"DEL", "\"a\x7fb\""},                         // raw
	{"escaped DEL", `"\u007f"`},                   // raw
	{"line separator", "\"\u2028\u2029\""},        // raw
	{"escaped line separator", `"\u2028"`},        // raw, 3 bytes
	{"escaped non-ASCII", `"\u00e9\u20AC\uffff"`}, // "é€\uffff" raw
	{"surrogate pair", `"\ud83d\ude00"`},          // "😀"
	{"surrogate pair upper case", `"\uD83D\uDE00"`},
	{"raw non-ASCII", `"é€😀"`},
	{"raw noncharacter", "\"\uffff\ufffe\""},
	{"replacement character", "\"\ufffd\""},
	{"key with escapes", `{"a\nb\u00e9":"\t"}`},

	// Strings PostgreSQL refuses.
	{"NUL escape", `"\u0000"`}, // 22P05
	{"NUL escape in a key", `{"\u0000":1}`},
	{"lone high surrogate", `"\ud800"`},
	{"lone low surrogate", `"\udc00"`},
	{"high surrogate then a character", `"\ud800x"`},
	{"high surrogate then an escape", `"\ud800\n"`},
	{"high surrogate then a BMP escape", `"\ud800\u0041"`},
	{"two high surrogates", `"\ud800\ud800"`},
	{"reversed pair", `"\ude00\ud83d"`},
	{"short unicode escape", `"\u12"`},
	{"bad hex", `"\u12g4"`},
	{"unknown escape", `"\x"`},
	{"single quote escape", `"\'"`},
	{"raw tab", "\"a\tb\""},
	{"raw newline", "\"a\nb\""},
	{"raw NUL", "\"a\x00b\""},
	{"unterminated string", `"abc`},
	{"unterminated escape", `"abc\`},
	{"single quotes", `'a'`},

	// Text that is not UTF-8 (the server refuses it before jsonb sees it).
	{"invalid UTF-8", "\"\xff\""},
	{"truncated UTF-8", "\"\xc3\""},
	{"overlong UTF-8", "\"\xc0\xaf\""},
	{"UTF-8 surrogate", "\"\xed\xa0\x80\""},
	{"UTF-8 beyond U+10FFFF", "\"\xf4\x90\x80\x80\""},
	{"Latin-1 outside a string", "\xe9"},
	{"NUL after the value", "1\x00"},

	// Structure.
	{"empty", ``},
	{"only whitespace", " \n"},
	{"trailing comma in an array", `[1,]`},
	{"trailing comma in an object", `{"a":1,}`},
	{"leading comma", `[,1]`},
	{"missing comma", `[1 2]`},
	{"missing colon", `{"a" 1}`},
	{"missing value", `{"a":}`},
	{"key not a string", `{1:2}`},
	{"bare word key", `{a:1}`},
	{"unclosed array", `[1`},
	{"unclosed object", `{"a":1`},
	{"mismatched brackets", `[1}`},
	{"extra bracket", `[1]]`},
	{"two values", `1 2`},
	{"bare word", `abc`},
	{"capitalized literal", `True`},
	{"truncated literal", `tru`},
	{"literal with a tail", `nullx`},
	{"comment", `[1] // x`},
}

// bigJSONBCases are built rather than written out.
func bigJSONBCases() []struct{ name, in string } {
	wide := func(n int, dup bool) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			key := strings.Repeat("k", i%7+1) + string(rune('a'+i%26))
			if dup {
				key = strings.Repeat("k", i%5)
			}
			b.WriteString(`"` + key + `":`)
			b.WriteString(strings.Repeat("[", i%4) + "1" + strings.Repeat("]", i%4))
		}
		b.WriteString("}")
		return b.String()
	}
	nested := func(depth int, open, close, leaf string) string {
		return strings.Repeat(open, depth) + leaf + strings.Repeat(close, depth)
	}
	return []struct{ name, in string }{
		{"many members", wide(100, false)},
		{"many duplicate members", wide(100, true)},
		{"32 levels", nested(32, `{"a":`, `}`, `1`)},
		{"33 levels", nested(33, `{"a":`, `}`, `1`)},
		{"1000 arrays", nested(1000, `[`, `]`, ``)},
		{"1000 objects", nested(1000, `{"a":`, `}`, `{}`)},
		{"long string", `"` + strings.Repeat(`é\n\u0001x`, 20000) + `"`},
		{"long number", strings.Repeat("9", 100000) + "." + strings.Repeat("0", 16383)},
		{"too many fraction digits", "0." + strings.Repeat("0", 16384)},
		{"131072 integer digits", strings.Repeat("9", 131072)},
		{"131073 integer digits", strings.Repeat("9", 131073)},
		{"131072 digits after leading zeros", "-0.000" + strings.Repeat("1", 131075) + "e131075"},
	}
}

func TestScanJSONB(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)

	for _, tt := range jsonbCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkScanJSONB(t, pool, []byte(tt.in))
		})
	}
	for _, tt := range bigJSONBCases() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkScanJSONB(t, pool, []byte(tt.in))
		})
	}
}

func FuzzScanJSONB(f *testing.F) {
	// The big cases stay out of the seeds: mutating 100 KB inputs slows
	// the fuzzer down more than they teach it.
	for _, tt := range jsonbCases {
		f.Add([]byte(tt.in))
	}
	pool := pgtest.Pool(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkScanJSONB(t, pool, data)
	})
}

// TestScanJSONBGenerated checks documents assembled from the pieces that
// are easy to get wrong (one key spelled several ways, numbers at numeric's
// limits, every escape), whole and damaged, against the database. Random
// bytes from FuzzScanJSONB rarely form such documents.
func TestScanJSONBGenerated(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	n := 2000
	if testing.Short() {
		n = 200
	}
	g := jsonbGenerator{rand.New(rand.NewPCG(20240601, uint64(n)))}
	for range n {
		doc := g.value(nil, 0)
		if g.rng.IntN(4) == 0 {
			doc = g.damage(doc)
		}
		checkScanJSONB(t, pool, doc)
	}
}

type jsonbGenerator struct{ rng *rand.Rand }

func (g jsonbGenerator) pick(choices ...string) string { return choices[g.rng.IntN(len(choices))] }

func (g jsonbGenerator) space(b []byte) []byte {
	for g.rng.IntN(3) == 0 {
		b = append(b, g.pick(" ", "\t", "\n", "\r")...)
	}
	return b
}

func (g jsonbGenerator) value(b []byte, depth int) []byte {
	b = g.space(b)
	kind := g.rng.IntN(5)
	if depth >= 5 {
		kind = 2 + g.rng.IntN(3)
	}
	switch kind {
	case 0:
		b = append(b, '{')
		for i := range g.rng.IntN(6) {
			if i > 0 {
				b = append(b, ',')
			}
			// Few keys, many spellings: duplicates are common.
			b = g.space(b)
			b = append(b, g.pick(`"a"`, `"\u0061"`, `"b"`, `""`, `"ab"`, `"é"`, `"\u00e9"`, `"\u00E9"`,
				`"😀"`, `"\ud83d\ude00"`, `"/"`, `"\/"`, `"\n"`, `"\u000a"`, `"A"`)...)
			b = g.space(b)
			b = append(b, ':')
			b = g.value(b, depth+1)
		}
		b = g.space(b)
		b = append(b, '}')
	case 1:
		b = append(b, '[')
		for i := range g.rng.IntN(5) {
			if i > 0 {
				b = append(b, ',')
			}
			b = g.value(b, depth+1)
		}
		b = g.space(b)
		b = append(b, ']')
	case 2:
		b = append(b, '"')
		for range g.rng.IntN(7) {
			b = append(b, g.pick("x", "é", "😀", "\u2028", "\x7f", "'", `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`,
				`\u0001`, `\u001F`, `\u001f`, `\u0022`, `\u005C`, `\u002F`, `\u00e9`, `\u2028`, `\uFFFF`, `\ud83d\ude00`,
				`\u007f`, `\u0008`, `\u000C`)...)
		}
		b = append(b, '"')
	case 3:
		b = g.number(b)
	default:
		b = append(b, g.pick("true", "false", "null")...)
	}
	return g.space(b)
}

func (g jsonbGenerator) digits(b []byte, n int, first string) []byte {
	for i := range n {
		if i == 0 && first != "" {
			b = append(b, g.pick(strings.Split(first, "")...)...)
			continue
		}
		b = append(b, "0123456789"[g.rng.IntN(10)])
	}
	return b
}

func (g jsonbGenerator) number(b []byte) []byte {
	if g.rng.IntN(3) == 0 {
		b = append(b, '-')
	}
	if g.rng.IntN(3) == 0 {
		b = append(b, '0')
	} else {
		b = g.digits(b, 1+g.rng.IntN(25), "123456789")
	}
	if g.rng.IntN(2) == 0 {
		b = append(b, '.')
		if g.rng.IntN(2) == 0 {
			b = append(b, strings.Repeat("0", g.rng.IntN(8))...)
		}
		b = g.digits(b, 1+g.rng.IntN(20), "")
	}
	if g.rng.IntN(2) == 0 {
		b = append(b, g.pick("e", "E", "e+", "E-", "e-")...)
		if g.rng.IntN(3) == 0 {
			// Around the limits: scale 16383, weight 32767, INT_MAX/2.
			e := g.pick("16375", "16380", "16381", "16382", "16383", "16384", "16390",
				"131045", "131060", "131069", "131070", "131071", "131072", "131073",
				"1073741822", "1073741823", "0001", "9999999999999999999999")
			b = append(b, e...)
		} else {
			b = g.digits(b, 1+g.rng.IntN(3), "")
		}
	}
	return b
}

// damage cuts, drops or inserts a byte.
func (g jsonbGenerator) damage(doc []byte) []byte {
	if len(doc) == 0 {
		return doc
	}
	i := g.rng.IntN(len(doc))
	switch g.rng.IntN(3) {
	case 0:
		return doc[:i]
	case 1:
		return append(doc[:i:i], doc[i+1:]...)
	default:
		c := g.pick(",", "]", "}", `"`, `\`, " ", "0", "e", ".", "-", "\x00", "\xff", "\f", "u", "d8")
		return append(append(doc[:i:i], c...), doc[i:]...)
	}
}

// jsonbQuery casts $1 to jsonb as a producer's INSERT does and measures it as
// the trigger does. The levels are counted up to at least 40, and to one
// past what scanJSONB found, so the count is exact whenever it matters.
const jsonbQuery = `
SELECT jsonb_typeof(x), octet_length(x::text),
       (SELECT count(*) - 1
          FROM generate_series(0, greatest(40, $2::int + 1)) AS n
         WHERE jsonb_path_exists(x, ('strict $.**{' || n || '}')::jsonpath))
  FROM (SELECT $1::text::jsonb AS x) AS input`

// checkScanJSONB compares scanJSONB(data) with the database's verdict.
func checkScanJSONB(t *testing.T, pool *pgxpool.Pool, data []byte) {
	t.Helper()
	got, scanErr := scanJSONB(data)

	var want jsonbInfo
	var level int64
	err := pool.QueryRow(t.Context(), jsonbQuery, string(data), got.MaxLevel).Scan(&want.Kind, &want.TextLen, &level)
	want.MaxLevel = int(level)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		if scanErr != nil {
			t.Fatalf("scanJSONB(%s) = %v; PostgreSQL accepts it: %+v", abbrev(data), scanErr, want)
		}
		if got != want {
			t.Fatalf("scanJSONB(%s) = %+v; PostgreSQL says %+v", abbrev(data), got, want)
		}
	case !errors.As(err, &pgErr):
		t.Fatalf("query: %v", err)
	case pgErr.Code == "54001":
		// The server's stack ran out in its recursive parser; scanJSONB
		// does not mirror that (see jsonb.go), but it must see a deep text.
		if scanErr == nil && got.MaxLevel < 1000 {
			t.Fatalf("scanJSONB(%s) = %+v; PostgreSQL ran out of stack on it: %v", abbrev(data), got, pgErr)
		}
	case pgErr.Code[:2] == "22":
		if scanErr == nil {
			t.Fatalf("scanJSONB(%s) = %+v; PostgreSQL refuses it: %v (%s)", abbrev(data), got, pgErr, pgErr.Detail)
		}
	default:
		t.Fatalf("query: %v", err)
	}
}

// abbrev quotes data for a failure message, shortened.
func abbrev(data []byte) string {
	const n = 200
	if len(data) > n {
		return strconv.Quote(string(data[:n])) + "..."
	}
	return strconv.Quote(string(data))
}

// TestScanJSONBDeep runs where the database cannot follow: nesting that
// would exhaust a recursive scanner's stack.
func TestScanJSONBDeep(t *testing.T) {
	t.Parallel()
	const depth = 1_000_000
	tests := []struct {
		name string
		in   string
		want jsonbInfo
	}{
		{"arrays", strings.Repeat("[", depth) + strings.Repeat("]", depth),
			jsonbInfo{Kind: "array", TextLen: 2 * depth, MaxLevel: depth - 1}},
		{"objects", strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth),
			jsonbInfo{Kind: "object", TextLen: len(`{"a": `+`}`)*depth + 1, MaxLevel: depth}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := scanJSONB([]byte(tt.in))
			if err != nil || got != tt.want {
				t.Fatalf("scanJSONB = %+v, %v; want %+v", got, err, tt.want)
			}
			if _, err := scanJSONB([]byte(tt.in[:len(tt.in)-1])); err == nil {
				t.Fatalf("scanJSONB accepts the text without its last byte")
			}
		})
	}
}
