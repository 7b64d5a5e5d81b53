// Package relayproc runs the relay binary built from the checkout as a
// subprocess, for make bench and make soak, and reads its memory and CPU
// from /proc, so that they are its own and not the measuring program's,
// with what /proc says of the machine (load average, CPU model, memory).
package relayproc

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
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture the relay builds for.
const clockTicks = 100

// Build compiles the module's ./cmd/relay into dir and returns the
// binary's path.
func Build(ctx context.Context, dir string) (string, error) {
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

// Proc is a relay running as a subprocess.
type Proc struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
}

// Start runs the relay binary bin with args (e.g. "run", "--http-addr=")
// and env added to this process's environment; its stdout and stderr (the
// logs) go to logPath.
func Start(bin string, args, env []string, logPath string) (*Proc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("relay log file: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start relay: %w", err)
	}
	p := &Proc{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

// Pid is the relay's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// LogPath is the file holding the relay's output.
func (p *Proc) LogPath() string { return p.logPath }

// Exited is closed once the relay has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Usage is what /proc says about a process.
type Usage struct {
	RSSKiB     int64         // VmRSS: resident now
	PeakRSSKiB int64         // VmHWM: the most resident so far
	CPU        time.Duration // utime + stime
}

// Usage reads the relay's memory and CPU time so far; it fails once the
// relay has exited.
func (p *Proc) Usage() (Usage, error) {
	select {
	case <-p.exited:
		return Usage{}, fmt.Errorf("relay exited early (%v); see %s", p.waitErr, p.logPath)
	default:
	}
	return ReadUsage(p.cmd.Process.Pid)
}

// ReadUsage reads the memory and CPU time of process pid.
func ReadUsage(pid int) (Usage, error) {
	var u Usage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	kib := func(v string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return n
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			u.PeakRSSKiB = kib(v)
		} else if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			u.RSSKiB = kib(v)
		}
	}
	ticks, err := CPUTicks(pid, false)
	if err != nil {
		return u, err
	}
	u.CPU = TicksToDuration(ticks)
	return u, nil
}

// CPUTicks reads utime+stime (and, with children, cutime+cstime) of pid,
// in clock ticks.
func CPUTicks(pid int, children bool) (int64, error) {
	f, err := StatFields(pid)
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

// StatFields returns the fields of /proc/<pid>/stat after the command name
// (which may hold spaces), starting at field 3 (state); the parent pid is
// f[1].
func StatFields(pid int) ([]string, error) {
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

// TicksToDuration converts clock ticks to a duration.
func TicksToDuration(t int64) time.Duration { return time.Duration(t) * time.Second / clockTicks }

// Stop sends SIGTERM and waits for the relay to exit, killing it after
// timeout. It returns the relay's exit error, if any.
func (p *Proc) Stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.ExitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.ExitErr()
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("relay did not stop within %s after SIGTERM; killed (see %s)", timeout, p.logPath)
	}
}

// ExitErr says how the relay exited: nil for exit code 0 (or while it
// runs).
func (p *Proc) ExitErr() error {
	if p.waitErr == nil {
		return nil
	}
	var exit *exec.ExitError
	if errors.As(p.waitErr, &exit) {
		return fmt.Errorf("relay exited with %v; see %s", exit, p.logPath)
	}
	return p.waitErr
}

// Dead reports whether the relay has exited.
func (p *Proc) Dead() bool {
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

// LogSummary counts the relay's log lines at warn level and above, and
// reads its peak heap (the largest heap at the start of a GC) from the
// runtime's GC trace in the same file (GODEBUG=gctrace=1).
func (p *Proc) LogSummary() (warn, errs int, peakHeapMiB float64) {
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
