package relayproc

import (
	"bufio"
	"os"
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
