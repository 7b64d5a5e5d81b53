package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mediaplatform/relay/internal/relayproc"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// pgCPU reads the CPU time of a local PostgreSQL cluster: the postmaster,
// the backends it has reaped (cutime, cstime) and the ones alive now.
type pgCPU struct{ postmaster int }

// newPGCPU finds the postmaster from the data directory; it returns nil
// when the cluster is not on this machine or not readable.
func newPGCPU(dataDir string) *pgCPU {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return nil
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return nil
	}
	if _, err := relayproc.StatFields(pid); err != nil {
		return nil
	}
	return &pgCPU{postmaster: pid}
}

// total returns the cluster's CPU time so far.
func (c *pgCPU) total() time.Duration {
	if c == nil {
		return 0
	}
	sum, err := relayproc.CPUTicks(c.postmaster, true)
	if err != nil {
		return 0
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return relayproc.TicksToDuration(sum)
	}
	ppid := strconv.Itoa(c.postmaster)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := relayproc.StatFields(pid)
		if err != nil || f[1] != ppid { // f[1] is field 4, the parent pid
			continue
		}
		if t, err := relayproc.CPUTicks(pid, false); err == nil {
			sum += t
		}
	}
	return relayproc.TicksToDuration(sum)
}

// selfCPU is the bench process's own CPU time (the fake Svix runs here).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// waitFor waits until cond holds on the fake Svix, for at most timeout,
// and gives up at once, with the relay's exit, when one of the relays
// procs dies first.
func waitFor(ctx context.Context, fake *svixfake.Server, timeout time.Duration, cond func(*svixfake.Server) bool, procs ...*relayproc.Proc) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, p := range procs {
		go func() {
			select {
			case <-p.Exited():
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	err := fake.WaitFor(ctx, cond)
	for _, p := range procs {
		if p.Dead() && err != nil {
			return fmt.Errorf("relay exited (%v); see %s", p.ExitErr(), p.LogPath())
		}
	}
	return err
}

// relays are the relay processes of one drain (its replicas).
type relays []*relayproc.Proc

// usage sums the relays' CPU time; PeakRSSKiB is the largest peak of any
// of them, and peaks lists each one's, in MiB.
func (rs relays) usage() (sum relayproc.Usage, peaks []float64, err error) {
	for _, p := range rs {
		u, err := p.Usage()
		if err != nil {
			return sum, nil, err
		}
		sum.CPU += u.CPU
		sum.RSSKiB += u.RSSKiB
		sum.PeakRSSKiB = max(sum.PeakRSSKiB, u.PeakRSSKiB)
		peaks = append(peaks, float64(u.PeakRSSKiB)/1024)
	}
	return sum, peaks, nil
}

// dead reports whether any of the relays has exited.
func (rs relays) dead() bool {
	return slices.ContainsFunc(rs, (*relayproc.Proc).Dead)
}

// stop stops the relays together (SIGTERM to each, then waits), so that a
// replica's shutdown leaves no rows for the others to pick up.
func (rs relays) stop(b *bench, name string, timeout time.Duration) {
	var wg sync.WaitGroup
	for i, p := range rs {
		wg.Go(func() {
			if err := p.Stop(timeout); err != nil {
				b.logf("%s: relay %d: %v", name, i+1, err)
			}
		})
	}
	wg.Wait()
}

// logSummary sums the relays' warnings and errors and gives the largest
// peak heap of any.
func (rs relays) logSummary() (warn, errs int, peakHeapMiB float64) {
	for _, p := range rs {
		w, e, h := p.LogSummary()
		warn, errs, peakHeapMiB = warn+w, errs+e, max(peakHeapMiB, h)
	}
	return warn, errs, peakHeapMiB
}

// relayArgs runs the relay's delivery without its ops port.
var relayArgs = []string{"run", "--http-addr="}

// prunePast runs `relay prune` once on a scenario's schema before its
// relay starts, as a deployment that has been running has already done:
// the migration's empty legacy partition and the partitions past the
// retention are dropped now, not by the relay's prune job a few hundred
// milliseconds into the scenario. Dropping a partition changes the
// outbox's partition set, so every connection replans its statements on
// the outbox: in a next-row run the relay's rounds, 10 ms apart, came
// 30 ms apart while its prune job dropped two partitions. A deployment
// meets that once per partition interval, not in every scenario.
func (b *bench) prunePast(ctx context.Context, sch *benchSchema) error {
	cmd := exec.CommandContext(ctx, b.relayBin, "prune", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+sch.url)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("relay prune: %w: %s", err, out)
	}
	return nil
}
