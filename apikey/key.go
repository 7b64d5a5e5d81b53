package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"strings"
)

// Prefix starts every key, so that a leaked key is recognisable (secret
// scanners can match it) and a key is never mistaken for another token.
const Prefix = "rk_live_"

// randomLength is the number of base62 characters after Prefix: 43
// characters carry 256 bits.
const randomLength = 43

// displayLength is how much of a key is stored and shown to tell keys
// apart: the prefix and 4 random characters (24 bits: not enough to guess
// the rest).
const displayLength = len(Prefix) + 4

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// generate returns a new random key.
func generate() (string, error) {
	var b strings.Builder
	b.Grow(len(Prefix) + randomLength)
	b.WriteString(Prefix)
	max := big.NewInt(int64(len(base62)))
	for range randomLength {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		b.WriteByte(base62[n.Int64()])
	}
	return b.String(), nil
}

// hash is what the database stores and looks keys up by.
func hash(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

// wellFormed reports whether key has the shape of a key, so that a request
// with garbage in its Authorization header costs no query.
func wellFormed(key string) bool {
	rest, ok := strings.CutPrefix(key, Prefix)
	if !ok || len(rest) != randomLength {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if strings.IndexByte(base62, rest[i]) < 0 {
			return false
		}
	}
	return true
}
