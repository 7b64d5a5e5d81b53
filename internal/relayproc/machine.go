package relayproc

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// LoadAvg is the 1, 5 and 15 minute load averages ("1.36 0.74 0.31").
func LoadAvg() string {
	la, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(la))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// Load1 is the one-minute load average.
func Load1() string {
	l, _, _ := strings.Cut(LoadAvg(), " ")
	return l
}

// ProcField returns the value of the first "key : value" line of file,
// e.g. ProcField("/proc/cpuinfo", "model name").
func ProcField(file, key string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// CPUStat is the machine's CPU time so far over every core, in clock
// ticks, from the first line of /proc/stat: Busy is every state but idle
// and iowait, Total every state (guest time is already in user).
type CPUStat struct{ Busy, Total int64 }

// ReadCPUStat reads the machine's CPU time so far.
func ReadCPUStat() (CPUStat, error) {
	var s CPUStat
	f, err := os.Open("/proc/stat")
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return s, fmt.Errorf("read /proc/stat: %v", cmp.Or(sc.Err(), io.ErrUnexpectedEOF))
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 || fields[0] != "cpu" {
		return s, fmt.Errorf("parse /proc/stat: first line %q", sc.Text())
	}
	// user nice system idle iowait irq softirq steal
	for i, v := range fields[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return s, fmt.Errorf("parse /proc/stat: %w", err)
		}
		s.Total += n
		if i != 3 && i != 4 {
			s.Busy += n
		}
	}
	return s, nil
}

// BusySince is the share of the machine's CPU time busy since an earlier
// reading, from 0 (idle) to 1 (every core busy); -1 when nothing elapsed.
func (s CPUStat) BusySince(earlier CPUStat) float64 {
	total := s.Total - earlier.Total
	if total <= 0 {
		return -1
	}
	return float64(s.Busy-earlier.Busy) / float64(total)
}
