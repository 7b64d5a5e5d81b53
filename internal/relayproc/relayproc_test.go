package relayproc

import (
	"os"
	"testing"
	"time"
)

func TestReadProcUsage(t *testing.T) {
	t.Parallel()
	// Burn CPU until the kernel has counted some (it counts in ticks), so
	// the CPU figure is shown to move, not merely to be non-negative.
	deadline := time.Now().Add(10 * time.Second)
	var sink uint64
	for {
		u, err := ReadUsage(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if u.PeakRSSKiB <= 0 || u.RSSKiB <= 0 {
			t.Fatalf("usage of this process: %+v, want an RSS and a peak RSS", u)
		}
		if u.CPU > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage of this process: %+v, want CPU time after 10 s of work (sink %d)", u, sink)
		}
		for i := range uint64(10_000_000) {
			sink += i * i
		}
	}
}

func TestReadCPUStat(t *testing.T) {
	t.Parallel()
	first, err := ReadCPUStat()
	if err != nil {
		t.Fatal(err)
	}
	if first.Total <= 0 || first.Busy <= 0 || first.Busy > first.Total {
		t.Fatalf("machine CPU %+v, want 0 < busy <= total", first)
	}
	if got := first.BusySince(first); got != -1 {
		t.Errorf("busy over no time = %g, want -1", got)
	}
	later := CPUStat{Busy: first.Busy + 50, Total: first.Total + 200}
	if got := later.BusySince(first); got != 0.25 {
		t.Errorf("busy = %g, want 0.25", got)
	}
}
