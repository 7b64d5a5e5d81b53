package outbox

import (
	"fmt"
	"unicode/utf8"
)

// This file mirrors, in Go, what PostgreSQL 15 (the supported version) does
// with a JSON text cast to jsonb: which texts it refuses, how long data::text is, and how deep the
// deepest value lies. The trigger's data_size and data_depth rules measure
// the stored jsonb, not the text a producer sent: duplicate keys are dropped
// (the last one wins), numbers are re-rendered by numeric_out (1e3 is
// "1000"), escapes are decoded and re-escaped. No JSON library reproduces
// that (encoding/json caps nesting at 10000, replaces invalid UTF-8 with
// U+FFFD and accepts unpaired surrogates), so this is a small hand-written
// scanner, checked against a real server by jsonb_test.go and FuzzScanJSONB.
//
// The scanner is iterative, so no input can exhaust the goroutine stack, and
// never materializes a number: 1e131071 costs 8 bytes to scan and measures
// 131072 bytes. PostgreSQL's recursive-descent parser refuses nesting past
// about 12,000 levels (stack depth limit exceeded, 54001); that limit depends
// on the server's max_stack_depth and is not mirrored here, nor are jsonb's
// 256 MB limits on a string or container (54000): Validate's data_depth and
// data_size rules refuse such data long before.

// jsonbInfo describes a JSON text as PostgreSQL would store it as jsonb.
type jsonbInfo struct {
	Kind     string // jsonb_typeof of the top-level value: "object", "array", "string", "number", "boolean", "null"
	TextLen  int    // octet_length(data::jsonb::text)
	MaxLevel int    // deepest item's level, root = 0, as jsonpath `strict $.**{N}` counts (so `{"a":{"b":1}}` -> 2, `[[]]` -> 1, `{}` -> 0)
}

// Limits of PostgreSQL's numeric type (src/backend/utils/adt/numeric.c).
const (
	// numericMaxExponent: set_var_from_str refuses an exponent e with
	// |e| >= INT_MAX/2 ("value overflows numeric format").
	numericMaxExponent = 1<<30 - 1
	// numericMaxDscale is NUMERIC_DSCALE_MAX: at most 16383 digits after
	// the decimal point, trailing zeros included.
	numericMaxDscale = 0x3FFF
	// numericMaxLead: the weight, an int16 counting base-10000 digits, is
	// at most 32767, so the leading nonzero digit stands for at most
	// 10^131071 (131072 integer digits).
	numericMaxLead = 4*32768 - 1
)

// jsonbError is a text PostgreSQL refuses as jsonb.
type jsonbError struct {
	Offset int    // byte offset in the text
	Reason string // what is wrong there
}

func (e *jsonbError) Error() string {
	return fmt.Sprintf("%s at byte %d", e.Reason, e.Offset)
}

// jsonbFrame is an array or object being scanned.
type jsonbFrame struct {
	object bool
	n      int // arrays: elements so far
	length int // arrays: text length of the elements so far
	level  int // arrays: depth of the deepest element so far, plus one
	// objects: where its members start on jsonbScanner.members and its
	// keys on jsonbScanner.keys.
	members, keys int
}

// jsonbMember is one key and value of an object being scanned.
type jsonbMember struct {
	keyStart, keyEnd int // the decoded key, in jsonbScanner.keys
	keyLen           int // text length of the key, quoted and escaped
	length, level    int // text length and depth of the value
}

type jsonbScanner struct {
	data    []byte
	pos     int
	stack   []jsonbFrame
	members []jsonbMember // members of the open objects, innermost last
	keys    []byte        // decoded keys of the open objects' members
	seen    map[string]struct{}
}

// scanJSONB returns the info, or an error when PostgreSQL would refuse data as jsonb input.
func scanJSONB(data []byte) (jsonbInfo, error) {
	// Sized for a typical event's data, so that they rarely grow.
	s := jsonbScanner{
		data:    data,
		stack:   make([]jsonbFrame, 0, 8),
		members: make([]jsonbMember, 0, 16),
		keys:    make([]byte, 0, 256),
	}
	return s.scan()
}

func (s *jsonbScanner) errorf(format string, args ...any) error {
	return &jsonbError{Offset: s.pos, Reason: fmt.Sprintf(format, args...)}
}

// unexpected reports the byte at s.pos, or the end of the text.
func (s *jsonbScanner) unexpected(want string) error {
	if s.pos >= len(s.data) {
		return s.errorf("unexpected end of JSON, want %s", want)
	}
	c := s.data[s.pos]
	if c < 0x20 || c >= 0x7f {
		return s.errorf("unexpected byte 0x%02x, want %s", c, want)
	}
	return s.errorf("unexpected %q, want %s", c, want)
}

// skipSpace skips what PostgreSQL's JSON lexer takes for whitespace.
func (s *jsonbScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *jsonbScanner) scan() (jsonbInfo, error) {
	var info jsonbInfo
	for {
		// A value starts here.
		s.skipSpace()
		if s.pos >= len(s.data) {
			return info, s.unexpected("a value")
		}
		var length int
		kind := ""
		switch c := s.data[s.pos]; {
		case c == '{' || c == '[':
			s.pos++
			s.skipSpace()
			if c == '{' {
				kind = "object"
				if s.pos < len(s.data) && s.data[s.pos] == '}' {
					s.pos++
					length = 2
					break
				}
				s.stack = append(s.stack, jsonbFrame{object: true, members: len(s.members), keys: len(s.keys)})
				if err := s.key(); err != nil {
					return info, err
				}
				continue
			}
			kind = "array"
			if s.pos < len(s.data) && s.data[s.pos] == ']' {
				s.pos++
				length = 2
				break
			}
			s.stack = append(s.stack, jsonbFrame{})
			continue
		case c == '"':
			kind = "string"
			n, err := s.string(false)
			if err != nil {
				return info, err
			}
			length = n
		case c == '-' || '0' <= c && c <= '9':
			kind = "number"
			n, err := s.number()
			if err != nil {
				return info, err
			}
			length = n
		case c == 't':
			kind, length = "boolean", 4
			if err := s.literal("true"); err != nil {
				return info, err
			}
		case c == 'f':
			kind, length = "boolean", 5
			if err := s.literal("false"); err != nil {
				return info, err
			}
		case c == 'n':
			kind, length = "null", 4
			if err := s.literal("null"); err != nil {
				return info, err
			}
		default:
			return info, s.unexpected("a value")
		}

		// A value of length and level 0 ended: add it to its container,
		// and close every container that ends after it.
		level := 0
		for {
			if len(s.stack) == 0 {
				s.skipSpace()
				if s.pos < len(s.data) {
					return info, s.unexpected("the end of JSON")
				}
				return jsonbInfo{Kind: kind, TextLen: length, MaxLevel: level}, nil
			}
			f := &s.stack[len(s.stack)-1]
			if f.object {
				m := &s.members[len(s.members)-1]
				m.length, m.level = length, level
			} else {
				f.n++
				f.length += length
				f.level = max(f.level, level+1)
			}
			s.skipSpace()
			if s.pos >= len(s.data) {
				return info, s.unexpected(`"," or the end of the container`)
			}
			c := s.data[s.pos]
			if c == ',' {
				s.pos++
				if f.object {
					s.skipSpace()
					if err := s.key(); err != nil {
						return info, err
					}
				}
				break // to the next value
			}
			if f.object && c == '}' {
				s.pos++
				kind = "object"
				length, level = s.closeObject(f)
			} else if !f.object && c == ']' {
				s.pos++
				kind = "array"
				// "[" elements joined by ", " "]"
				length, level = 2+f.length+2*(f.n-1), f.level
			} else if f.object {
				return info, s.unexpected(`"," or "}"`)
			} else {
				return info, s.unexpected(`"," or "]"`)
			}
			s.stack = s.stack[:len(s.stack)-1]
		}
	}
}

// key scans an object member's key and the colon after it, and opens the
// member on s.members.
func (s *jsonbScanner) key() error {
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return s.unexpected("a string key")
	}
	start := len(s.keys)
	n, err := s.string(true)
	if err != nil {
		return err
	}
	s.members = append(s.members, jsonbMember{keyStart: start, keyEnd: len(s.keys), keyLen: n})
	s.skipSpace()
	if s.pos >= len(s.data) || s.data[s.pos] != ':' {
		return s.unexpected(`":"`)
	}
	s.pos++
	return nil
}

// closeObject returns the text length and depth of object f, whose members
// are all scanned, and drops its members and keys from the scanner. As
// jsonb does, a key given twice keeps its last value; jsonb also orders
// keys (shorter first, then bytewise), which changes neither measure.
func (s *jsonbScanner) closeObject(f *jsonbFrame) (length, level int) {
	members := s.members[f.members:]
	keep := func(m jsonbMember) {
		// `"key": value`, members joined by ", "
		if length > 0 {
			length += 2
		}
		length += m.keyLen + 2 + m.length
		level = max(level, m.level+1)
	}
	key := func(m jsonbMember) []byte { return s.keys[m.keyStart:m.keyEnd] }
	if len(members) <= 16 {
		// Small objects, the usual case: compare each key with the later ones.
	small:
		for i, m := range members {
			for _, later := range members[i+1:] {
				if string(key(m)) == string(key(later)) {
					continue small
				}
			}
			keep(m)
		}
	} else {
		if s.seen == nil {
			s.seen = make(map[string]struct{}, len(members))
		}
		clear(s.seen)
		for i := len(members) - 1; i >= 0; i-- {
			k := key(members[i])
			if _, dup := s.seen[string(k)]; dup {
				continue
			}
			s.seen[string(k)] = struct{}{}
			keep(members[i])
		}
	}
	s.members = s.members[:f.members]
	s.keys = s.keys[:f.keys]
	return length + 2, level
}

func (s *jsonbScanner) literal(word string) error {
	for i := range len(word) {
		if s.pos >= len(s.data) || s.data[s.pos] != word[i] {
			return s.unexpected(fmt.Sprintf("%q", word))
		}
		s.pos++
	}
	return nil
}

// escapedLen is the length of decoded byte c in jsonb's text output
// (escape_json).
func escapedLen(c byte) int {
	switch c {
	case '"', '\\', '\b', '\f', '\n', '\r', '\t':
		return 2
	}
	if c < 0x20 {
		return 6 // \u00XX
	}
	return 1
}

// string scans a string starting at its opening quote and returns its text
// length as jsonb renders it. With key set, it appends the decoded string
// to s.keys.
func (s *jsonbScanner) string(key bool) (int, error) {
	s.pos++ // the opening quote
	length := 2
	hiSurrogate := rune(-1) // a \uD800-\uDBFF escape waiting for its low half
	for {
		if s.pos >= len(s.data) {
			return 0, s.errorf("unterminated string")
		}
		c := s.data[s.pos]
		if hiSurrogate >= 0 && !(c == '\\' && s.pos+1 < len(s.data) && s.data[s.pos+1] == 'u') {
			return 0, s.errorf(`Unicode high surrogate not followed by a low surrogate`)
		}
		switch {
		case c == '"':
			s.pos++
			return length, nil
		case c < 0x20:
			return 0, s.errorf("character 0x%02x must be escaped in a string", c)
		case c < utf8.RuneSelf && c != '\\':
			length += escapedLen(c)
			if key {
				s.keys = append(s.keys, c)
			}
			s.pos++
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && size == 1 {
				return 0, s.errorf("invalid UTF-8")
			}
			length += size
			if key {
				s.keys = append(s.keys, s.data[s.pos:s.pos+size]...)
			}
			s.pos += size
		default: // a backslash
			if s.pos+1 >= len(s.data) {
				return 0, s.errorf("unterminated string")
			}
			var d byte
			switch e := s.data[s.pos+1]; e {
			case '"', '\\', '/':
				d = e
			case 'b':
				d = '\b'
			case 'f':
				d = '\f'
			case 'n':
				d = '\n'
			case 'r':
				d = '\r'
			case 't':
				d = '\t'
			case 'u':
				r, err := s.unicodeEscape()
				if err != nil {
					return 0, err
				}
				switch {
				case 0xD800 <= r && r <= 0xDBFF:
					if hiSurrogate >= 0 {
						return 0, s.errorf(`Unicode high surrogate must not follow a high surrogate`)
					}
					hiSurrogate = r
					s.pos += 6
					continue
				case 0xDC00 <= r && r <= 0xDFFF:
					if hiSurrogate < 0 {
						return 0, s.errorf(`Unicode low surrogate must follow a high surrogate`)
					}
					r = 0x10000 + (hiSurrogate-0xD800)<<10 + (r - 0xDC00)
					hiSurrogate = -1
				case hiSurrogate >= 0:
					return 0, s.errorf(`Unicode high surrogate not followed by a low surrogate`)
				case r == 0:
					return 0, s.errorf(`\u0000 cannot be converted to text`)
				}
				s.pos += 6
				if r < utf8.RuneSelf {
					length += escapedLen(byte(r))
				} else {
					length += utf8.RuneLen(r)
				}
				if key {
					s.keys = utf8.AppendRune(s.keys, r)
				}
				continue
			default:
				s.pos++
				return 0, s.unexpected("an escape sequence")
			}
			length += escapedLen(d)
			if key {
				s.keys = append(s.keys, d)
			}
			s.pos += 2
		}
	}
}

// unicodeEscape decodes the four hex digits of the \u escape at s.pos.
func (s *jsonbScanner) unicodeEscape() (rune, error) {
	var r rune
	for i := s.pos + 2; i < s.pos+6; i++ {
		if i >= len(s.data) {
			return 0, s.errorf(`"\u" must be followed by four hexadecimal digits`)
		}
		c := s.data[i]
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, s.errorf(`"\u" must be followed by four hexadecimal digits`)
		}
	}
	return r, nil
}

// number scans a number and returns its text length as numeric_out renders
// it: no exponent, no sign on zero, as many fraction digits as the display
// scale, max(0, fraction digits - exponent). It refuses what numeric_in
// refuses: a display scale above 16383, more than 131072 integer digits, an
// exponent of 2^30-1 or more in magnitude.
func (s *jsonbScanner) number() (int, error) {
	start := s.pos
	neg := false
	if s.data[s.pos] == '-' {
		neg = true
		s.pos++
	}
	digits := func() int {
		n := 0
		for s.pos < len(s.data) && '0' <= s.data[s.pos] && s.data[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}

	// lead is the power of ten of the first nonzero digit, before the
	// exponent; nonzero tells whether there is one.
	var lead int
	nonzero := false
	intStart := s.pos
	intDigits := digits()
	switch {
	case intDigits == 0:
		return 0, s.unexpected("a digit")
	case s.data[intStart] == '0':
		if intDigits > 1 {
			s.pos = intStart + 1
			return 0, s.errorf("leading zero in a number")
		}
	default:
		nonzero, lead = true, intDigits-1
	}
	fracDigits := 0
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		fracStart := s.pos
		if fracDigits = digits(); fracDigits == 0 {
			return 0, s.unexpected("a digit after the decimal point")
		}
		if !nonzero {
			for i, c := range s.data[fracStart:s.pos] {
				if c != '0' {
					nonzero, lead = true, -(i + 1)
					break
				}
			}
		}
	}
	exp := 0 // saturates past the limit, as strtol does at LONG_MAX
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		expNeg := false
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			expNeg = s.data[s.pos] == '-'
			s.pos++
		}
		expStart := s.pos
		if digits() == 0 {
			return 0, s.unexpected("a digit in the exponent")
		}
		for _, c := range s.data[expStart:s.pos] {
			if exp = exp*10 + int(c-'0'); exp > numericMaxExponent {
				exp = numericMaxExponent
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	if exp >= numericMaxExponent || exp <= -numericMaxExponent {
		return 0, &jsonbError{Offset: start, Reason: "number overflows numeric format (exponent too large)"}
	}
	scale := max(0, fracDigits-exp)
	if scale > numericMaxDscale {
		return 0, &jsonbError{Offset: start, Reason: fmt.Sprintf("number overflows numeric format (more than %d digits after the decimal point)", numericMaxDscale)}
	}
	length := 1 // "0" when the integer part is zero
	if nonzero {
		lead += exp
		if lead > numericMaxLead {
			return 0, &jsonbError{Offset: start, Reason: fmt.Sprintf("number overflows numeric format (more than %d digits before the decimal point)", numericMaxLead+1)}
		}
		if neg {
			length++
		}
		if lead > 0 {
			length += lead
		}
	}
	if scale > 0 {
		length += 1 + scale
	}
	return length, nil
}
