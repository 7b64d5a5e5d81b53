package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mediaplatform/relay/internal/svixfake"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture the relay builds for.
const clockTicks = 100

// buildRelay compiles the module's ./cmd/relay into dir and returns the
// binary's path.
func buildRelay(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "relay")
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", fmt.Errorf("find the module root (go env GOMOD): %v", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/relay")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/relay: %w", err)
	}
	return bin, nil
}

// relayProc is a relay running as a subprocess, so that its memory and CPU
// are its own, read from /proc.
type relayProc struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
}

// startRelay runs `relay run` with env added to the bench's environment;
// its stderr (the logs) goes to logPath.
func startRelay(bin string, env []string, logPath string) (*relayProc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("relay log file: %w", err)
	}
	cmd := exec.Command(bin, "run", "--http-addr=")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start relay: %w", err)
	}
	p := &relayProc{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

// procUsage is what /proc says about a process.
type procUsage struct {
	PeakRSSKiB int64         // VmHWM
	CPU        time.Duration // utime + stime
}

// usage reads the relay's peak RSS and CPU time so far.
func (p *relayProc) usage() (procUsage, error) {
	select {
	case <-p.exited:
		return procUsage{}, fmt.Errorf("relay exited early (%v); see %s", p.waitErr, p.logPath)
	default:
	}
	return readProcUsage(p.cmd.Process.Pid)
}

func readProcUsage(pid int) (procUsage, error) {
	var u procUsage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			u.PeakRSSKiB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	ticks, err := statTicks(pid, false)
	if err != nil {
		return u, err
	}
	u.CPU = ticksToDuration(ticks)
	return u, nil
}

// statTicks reads utime+stime (and, with children, cutime+cstime) of pid,
// plus its parent pid in the second result of statFields.
func statTicks(pid int, children bool) (int64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	// f[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
	n := 2
	if children {
		n = 4
	}
	var sum int64
	for i := range n {
		v, err := strconv.ParseInt(f[11+i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
		}
		sum += v
	}
	return sum, nil
}

// statFields returns the fields of /proc/<pid>/stat after the command name
// (which may hold spaces), starting at field 3.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return nil, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

func ticksToDuration(t int64) time.Duration { return time.Duration(t) * time.Second / clockTicks }

// stop sends SIGTERM and waits for the relay to exit, killing it after
// timeout.
func (p *relayProc) stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.exitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.exitErr()
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("relay did not stop within %s after SIGTERM; killed (see %s)", timeout, p.logPath)
	}
}

func (p *relayProc) exitErr() error {
	if p.waitErr == nil {
		return nil
	}
	var exit *exec.ExitError
	if errors.As(p.waitErr, &exit) {
		return fmt.Errorf("relay exited with %v; see %s", exit, p.logPath)
	}
	return p.waitErr
}

// dead reports whether the relay has exited.
func (p *relayProc) dead() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// gcHeap matches the heap sizes of a GODEBUG=gctrace=1 line: heap at GC
// start, at GC end, and live, in MiB ("4->5->2 MB").
var gcHeap = regexp.MustCompile(`(\d+)->(\d+)->(\d+) MB`)

// logSummary counts the relay's log lines at warn level and above, and
// reads its peak heap (the largest heap at the start of a GC) from the
// runtime's GC trace in the same file.
func (p *relayProc) logSummary() (warn, errs int, peakHeapMiB float64) {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return 0, 0, 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		switch {
		case strings.Contains(line, `"level":"warn"`):
			warn++
		case strings.Contains(line, `"level":"error"`):
			errs++
		case strings.HasPrefix(line, "gc "):
			if m := gcHeap.FindStringSubmatch(line); m != nil {
				v, _ := strconv.ParseFloat(m[1], 64)
				peakHeapMiB = max(peakHeapMiB, v)
			}
		}
	}
	return warn, errs, peakHeapMiB
}

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
	if _, err := statFields(pid); err != nil {
		return nil
	}
	return &pgCPU{postmaster: pid}
}

// total returns the cluster's CPU time so far.
func (c *pgCPU) total() time.Duration {
	if c == nil {
		return 0
	}
	sum, err := statTicks(c.postmaster, true)
	if err != nil {
		return 0
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return ticksToDuration(sum)
	}
	ppid := strconv.Itoa(c.postmaster)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil || f[1] != ppid { // f[1] is field 4, the parent pid
			continue
		}
		if t, err := statTicks(pid, false); err == nil {
			sum += t
		}
	}
	return ticksToDuration(sum)
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
// and gives up at once, with the relay's exit, when the relay dies first.
func (p *relayProc) waitFor(ctx context.Context, fake *svixfake.Server, timeout time.Duration, cond func(*svixfake.Server) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() {
		select {
		case <-p.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := fake.WaitFor(ctx, cond)
	select {
	case <-p.exited:
		if err != nil {
			return fmt.Errorf("relay exited (%v); see %s", p.exitErr(), p.logPath)
		}
	default:
	}
	return err
}
