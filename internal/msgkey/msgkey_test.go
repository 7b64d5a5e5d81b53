package msgkey_test

import (
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/msgkey"
)

func TestParse(t *testing.T) {
	t.Parallel()

	at := time.UnixMicro(1795824827763759)
	tests := []struct {
		key     string
		id      int64
		resends int
		ok      bool
		wantAt  time.Time
	}{
		{"ob_3_1795824827763759", 3, 0, true, at},
		{"ob_42_1795824827763759_r2", 42, 2, true, at},
		{"ob_0_1795824827763759", 0, 0, false, time.Time{}},
		{"ob_x_1", 0, 0, false, time.Time{}},
		{"ob_3", 0, 0, false, time.Time{}},
		{"ob_3_1_x", 0, 0, false, time.Time{}},
		{"ob_3_1_r0", 0, 0, false, time.Time{}},
		{"msg_3_1", 0, 0, false, time.Time{}},
		{"", 0, 0, false, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			id, got, resends, ok := msgkey.Parse(tt.key)
			if id != tt.id || resends != tt.resends || ok != tt.ok || !got.Equal(tt.wantAt) {
				t.Errorf("ParseKey(%q) = %d, %s, %d, %t; want %d, %s, %d, %t", tt.key, id, got, resends, ok, tt.id, tt.wantAt, tt.resends, tt.ok)
			}
		})
	}

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		for _, resends := range []int{0, 1, 17} {
			key := msgkey.Format(99, at, resends)
			id, got, r, ok := msgkey.Parse(key)
			if !ok || id != 99 || !got.Equal(at) || r != resends {
				t.Errorf("ParseKey(Key(99, %s, %d)) = %d, %s, %d, %t", at, resends, id, got, r, ok)
			}
		}
	})
}
