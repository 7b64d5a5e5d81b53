package live

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mediaplatform/relay/outbox"
)

// MinSecretBytes is the shortest RELAY_LIVE_SECRET accepted: HS256 keys
// shorter than the hash's 32 bytes weaken the signature.
const MinSecretBytes = 32

// Audience is the token's "aud": a live token is good for the live stream
// only, never mistaken for another token signed with the same secret.
const Audience = "relay-live"

// MaxTokenTTL is the longest lifetime Mint gives a token. Tokens are
// meant to be short-lived: the page refreshes its token through the
// product's backend and resumes from its cursor.
const MaxTokenTTL = 24 * time.Hour

// ErrShortSecret is returned for a secret under MinSecretBytes.
var ErrShortSecret = fmt.Errorf("live: the secret must be at least %d bytes", MinSecretBytes)

// errBadToken is any token the stream refuses; the reason goes to the
// client's envelope, never the token.
var errBadToken = errors.New("invalid live token")

// Mint returns a token (a JWT signed with HS256) that lets its holder
// read appID's live stream until ttl has passed. Products call it in their
// own backend for the signed-in user's account and hand the token to the
// page (or set the session cookie with SetSessionCookie).
func Mint(secret []byte, appID string, ttl time.Duration) (string, error) {
	return mintAt(secret, appID, ttl, time.Now())
}

func mintAt(secret []byte, appID string, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) < MinSecretBytes {
		return "", ErrShortSecret
	}
	if err := outbox.ValidateAppID(appID); err != nil {
		return "", fmt.Errorf("live: mint token: %w", err)
	}
	if ttl <= 0 || ttl > MaxTokenTTL {
		return "", fmt.Errorf("live: mint token: ttl must be positive and at most %s, got %s", MaxTokenTTL, ttl)
	}
	claims := jwt.RegisteredClaims{
		Subject:   appID,
		Audience:  jwt.ClaimStrings{Audience},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("live: sign token: %w", err)
	}
	return tok, nil
}

// principal is who a verified token lets in, and until when.
type principal struct {
	AppID   string
	Expires time.Time
}

// verify checks a token's signature (HS256 with secret only), audience
// and expiry, and returns its account. The error says why, without the
// token.
func verify(secret []byte, token string, now time.Time) (principal, error) {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return principal{}, fmt.Errorf("%w: the token has expired", errBadToken)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return principal{}, fmt.Errorf("%w: the signature does not match", errBadToken)
	case err != nil:
		return principal{}, fmt.Errorf("%w: %s", errBadToken, "the token is malformed or not a live token")
	}
	if outbox.ValidateAppID(claims.Subject) != nil {
		return principal{}, fmt.Errorf("%w: the token names no valid account", errBadToken)
	}
	return principal{AppID: claims.Subject, Expires: claims.ExpiresAt.Time}, nil
}
