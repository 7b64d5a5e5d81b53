package apikey_test

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/mediaplatform/relay/apikey"
	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/testkit"
	"github.com/mediaplatform/relay/outbox"
)

// TestMain checks that no goroutine outlives the tests; pgtest's shared
// admin pool lives for the whole run.
func TestMain(m *testing.M) {
	testkit.VerifyTestMain(m)
}

func request(header string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	if header != "" {
		r.Header.Set("Authorization", header)
	}
	return r
}

func TestStore(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	s := apikey.NewStore(pool)
	ctx := t.Context()

	k, text, err := s.Create(ctx, "acme", "ci")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text, apikey.Prefix) || len(text) != len(apikey.Prefix)+43 || !strings.HasPrefix(text, k.Prefix) || len(k.Prefix) >= len(text)-30 {
		t.Errorf("key of %d characters, prefix %q", len(text), k.Prefix)
	}
	_, text2, err := s.Create(ctx, "acme", "")
	if err != nil || text2 == text {
		t.Fatalf("second key: %v, equal to the first: %v", err, text2 == text)
	}
	var stored []byte
	if err := pool.QueryRow(ctx, `SELECT key_hash FROM api_key WHERE id = $1`, k.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256([]byte(text)); string(stored) != string(sum[:]) {
		t.Error("key_hash is not the key's SHA-256")
	}
	if _, err := pool.Exec(ctx, `INSERT INTO api_key (app_id, prefix, key_hash) VALUES ('acme', 'x', $1)`, stored); err == nil {
		t.Error("a second row with the same hash was accepted: want a unique index")
	}

	p, err := s.Authenticate(request("Bearer " + text))
	if err != nil || p.AppID != "acme" || p.KeyID == "" || strings.Contains(p.KeyID, text) {
		t.Errorf("authenticate: %+v, %v", p, err)
	}
	if p, err := s.Authenticate(request("bearer  " + text + " ")); err != nil || p.AppID != "acme" {
		t.Errorf("lower-case scheme, spaces: %+v, %v", p, err)
	}
	for name, h := range map[string]string{
		"none": "", "basic": "Basic " + text, "empty": "Bearer ", "other shape": "Bearer " + text + "x",
		"unknown": "Bearer " + apikey.Prefix + strings.Repeat("Z", 43), "bad characters": "Bearer " + apikey.Prefix + strings.Repeat("-", 43),
	} {
		if _, err := s.Authenticate(request(h)); !errors.Is(err, apikey.ErrUnauthenticated) {
			t.Errorf("%s: err %v, want ErrUnauthenticated", name, err)
		}
	}

	keys, err := s.List(ctx, "acme")
	if err != nil || len(keys) != 2 || keys[0].LastUsedAt == nil || keys[1].LastUsedAt != nil {
		t.Errorf("list: %+v, %v; want 2 keys, the first used", keys, err)
	}
	if others, err := s.List(ctx, "initech"); err != nil || len(others) != 0 {
		t.Errorf("list of another account: %v, %v", others, err)
	}

	revoked, err := s.Revoke(ctx, k.ID)
	if err != nil || revoked.RevokedAt == nil {
		t.Fatalf("revoke: %+v, %v", revoked, err)
	}
	if _, err := s.Authenticate(request("Bearer " + text)); !errors.Is(err, apikey.ErrUnauthenticated) {
		t.Errorf("revoked key: %v, want ErrUnauthenticated at once", err)
	}
	if again, err := s.Revoke(ctx, k.ID); err != nil || !again.RevokedAt.Equal(*revoked.RevokedAt) {
		t.Errorf("revoke twice: %v, %v", again, err)
	}
	if _, err := s.Revoke(ctx, 987654); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("revoke unknown: %v, want ErrNotFound", err)
	}

	var verr *outbox.ValidationError
	if _, _, err := s.Create(ctx, "app_x", ""); !errors.As(err, &verr) || verr.Field != "app_id" {
		t.Errorf("create for app_x: %v, want an app_id ValidationError", err)
	}
	if _, _, err := s.Create(ctx, "acme", strings.Repeat("n", apikey.MaxNameLength+1)); err == nil {
		t.Error("a name over the limit was accepted")
	}
}
