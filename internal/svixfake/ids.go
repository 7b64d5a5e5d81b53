package svixfake

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"time"
)

// ksuidEpoch is the KSUID epoch (2014-05-13T16:53:20Z); Svix ids are KSUIDs.
const ksuidEpoch = 1_400_000_000

const base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID returns prefix followed by 27 base62 characters encoding a
// KSUID-shaped value: 4 bytes of seconds since the KSUID epoch and 16
// random bytes, so ids sort by creation second like Svix's do. Randomness
// comes from math/rand/v2 (ChaCha8, goroutine-safe, no lock): ids need to
// be unique, not secret.
func newID(prefix string, now time.Time) string {
	var raw [20]byte
	binary.BigEndian.PutUint32(raw[:4], uint32(now.Unix()-ksuidEpoch))
	binary.BigEndian.PutUint64(raw[4:12], mrand.Uint64())
	binary.BigEndian.PutUint64(raw[12:20], mrand.Uint64())

	// Base62 of a 160-bit big-endian number, fixed width 27, by repeated
	// division of five 32-bit words.
	words := [5]uint32{
		binary.BigEndian.Uint32(raw[0:4]),
		binary.BigEndian.Uint32(raw[4:8]),
		binary.BigEndian.Uint32(raw[8:12]),
		binary.BigEndian.Uint32(raw[12:16]),
		binary.BigEndian.Uint32(raw[16:20]),
	}
	const width = 27
	out := make([]byte, len(prefix)+width)
	copy(out, prefix)
	for i := len(out) - 1; i >= len(prefix); i-- {
		var rem uint64
		for j := range words {
			cur := rem<<32 | uint64(words[j])
			words[j] = uint32(cur / 62)
			rem = cur % 62
		}
		out[i] = base62Alphabet[rem]
	}
	return string(out)
}

// newEndpointSecret returns "whsec_" + base64 of 24 random bytes, the size
// Svix generates.
func newEndpointSecret() (string, error) {
	var key [24]byte
	if _, err := rand.Read(key[:]); err != nil {
		return "", fmt.Errorf("generate endpoint secret: %w", err)
	}
	return secretPrefix + base64.StdEncoding.EncodeToString(key[:]), nil
}

const secretPrefix = "whsec_"
