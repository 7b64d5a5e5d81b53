package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mediaplatform/relay/internal/relayproc"
)

// series is one column the summary checks for flatness.
type series struct {
	name string
	of   func(sample) float64
	// slack is the absolute change allowed besides the relative
	// tolerance, for series whose level is small or cyclic.
	slack     func(o options) float64
	slackText string
	// cost marks a series that must not grow (sizes, memory, backlog):
	// only a rise counts against it, a fall is flat or better.
	cost bool
}

var flatSeries = []series{
	{"inserted rows/s", func(x sample) float64 { return x.insRate }, func(options) float64 { return 0 }, "-", false},
	{"delivered rows/s", func(x sample) float64 { return x.rate }, func(options) float64 { return 0 }, "-", false},
	{"backlog rows", func(x sample) float64 { return float64(x.backlog) }, func(o options) float64 { return 10 * o.rate }, "10 s of rows", true},
	{"relay RSS MiB", func(x sample) float64 { return x.rssMiB }, func(options) float64 { return 16 }, "16 MiB", true},
	{"outbox MiB", func(x sample) float64 { return x.outboxMiB }, func(options) float64 { return 16 }, "16 MiB", true},
	{"River jobs MiB", func(x sample) float64 { return x.jobsMiB }, func(options) float64 { return 8 }, "8 MiB", true},
	{"WAL B/row", func(x sample) float64 { return x.walPerRow }, func(options) float64 { return 0 }, "-", true},
	{"dead tuples", func(x sample) float64 { return float64(x.deadTup) }, func(o options) float64 { return 30 * o.rate }, "30 s of rows", true},
	{"partitions", func(x sample) float64 { return float64(x.partitions) }, func(options) float64 { return 2 }, "2", true},
}

// flatness is one series' verdict.
type flatness struct {
	name       string
	cost       bool
	q2, q4     float64
	change     float64 // (q4 - q2) / q2
	flat, none bool    // none: too few samples
	slackText  string
}

// minSamples is the fewest insert-phase samples whose quarters are
// compared.
const minSamples = 8

// flatnesses compares the last quarter of the insert phase with the
// second (the first is the warm-up) for each series.
func (r *result) flatnesses() []flatness {
	var ins []sample
	for _, x := range r.samples {
		if x.phase == "insert" && x.at > 0 {
			ins = append(ins, x)
		}
	}
	n := len(ins)
	out := make([]flatness, 0, len(flatSeries))
	for _, s := range flatSeries {
		f := flatness{name: s.name, slackText: s.slackText, cost: s.cost}
		if n < minSamples {
			f.none = true
			out = append(out, f)
			continue
		}
		f.q2, f.q4 = mean(ins[n/4:n/2], s.of), mean(ins[3*n/4:], s.of)
		if f.q2 != 0 {
			f.change = (f.q4 - f.q2) / math.Abs(f.q2)
		}
		d := math.Abs(f.q4 - f.q2)
		if s.cost {
			d = max(f.q4-f.q2, 0)
		}
		f.flat = d <= r.o.tolerance*math.Abs(f.q2) || d <= s.slack(r.o) || math.IsNaN(d)
		out = append(out, f)
	}
	return out
}

func mean(xs []sample, of func(sample) float64) float64 {
	sum, n := 0.0, 0
	for _, x := range xs {
		if v := of(x); !math.IsNaN(v) {
			sum += v
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// notFlat names the series that did not stay flat.
func (r *result) notFlat() []string {
	var out []string
	for _, f := range r.flatnesses() {
		if !f.none && !f.flat {
			out = append(out, f.name)
		}
	}
	return out
}

func (f flatness) cells(tol float64) []string {
	if f.none {
		return []string{f.name, "-", "-", "-", "not enough samples (fewer than " + strconv.Itoa(minSamples) + ")"}
	}
	verdict := "yes"
	if !f.flat {
		verdict = "NO"
	}
	bound := "±"
	if f.cost {
		bound = "+"
	}
	return []string{f.name, num(f.q2), num(f.q4), fmt.Sprintf("%+.1f%%", 100*f.change),
		fmt.Sprintf("%s (%s%.0f%% or %s)", verdict, bound, 100*tol, f.slackText)}
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
}

var flatHeader = []string{"series", "2nd quarter", "last quarter", "change", "flat"}

// verdict is the correctness line.
func (r *result) verdict() string {
	c := r.counts
	line := fmt.Sprintf("%d rows inserted, %d messages at Svix: %d rows once, %d duplicates, %d missing, %d out of order per asset; outbox: %d not marked delivered, %d failed, %d rows left (%d removed by retention); %d answers 409 (resends Svix refused); relay exit on SIGTERM: %s",
		r.o.rows, c.messages, c.delivered, c.duplicates, c.missing, c.outOfOrder, r.undelivered, r.failed, r.left, r.o.rows-r.left, r.status409, exitText(r.relayExit))
	if len(r.problems) == 0 {
		return "OK   " + line
	}
	return "FAIL " + line + "\n     " + strings.Join(r.problems, "\n     ")
}

func exitText(err error) string {
	if err == nil {
		return "0"
	}
	return err.Error()
}

// figures are the run's other numbers.
func (r *result) figures() []string {
	errs := "none"
	if len(r.prodErrors) > 0 {
		keys := make([]string, 0, len(r.prodErrors))
		for k := range r.prodErrors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s×%d", k, r.prodErrors[k]))
		}
		errs = strings.Join(parts, ", ")
	}
	at := r.o.rows
	rate := float64(at) / r.insertSecs
	return []string{
		fmt.Sprintf("insert phase %s (%.0f rows/s achieved of %.0f asked, %d transactions, failed attempts: %s, retried: %d); the last row reached Svix %s after the last insert",
			secs(r.insertSecs), rate, r.o.rate, r.txs, errs, r.retries, secs(r.drainSecs)),
		fmt.Sprintf("relay: peak RSS %.1f MiB, peak heap %.0f MiB (GC trace), %d warn and %d error log lines; this program (producers, fake Svix, checks): peak RSS %.1f MiB", r.peakRSS, r.peakHeap, r.warn, r.errs, r.selfPeakRSS),
		fmt.Sprintf("10,000,000 rows at %.0f rows/s take %s of inserts; load average at the end %s", r.o.rate, secs(1e7/r.o.rate), relayproc.LoadAvg()),
	}
}

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

func (r *result) printSummary(out io.Writer) {
	fmt.Fprintln(out)
	for _, l := range r.figures() {
		fmt.Fprintln(out, l)
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Flat over the insert phase: the last quarter's mean against the second quarter's (the first quarter is the warm-up):")
	rows := [][]string{flatHeader}
	for _, f := range r.flatnesses() {
		rows = append(rows, f.cells(r.o.tolerance))
	}
	widths := make([]int, len(flatHeader))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, c := range row {
			if i == 0 || i == len(row)-1 {
				fmt.Fprintf(&b, "%-*s", widths[i], c)
			} else {
				fmt.Fprintf(&b, "%*s", widths[i], c)
			}
			if i < len(row)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(out, strings.TrimRight(b.String(), " "))
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, r.verdict())
}

// markdownText is the result as Markdown for the README.
func (r *result) markdownText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### make soak: %d rows at %.0f rows/s\n\n", r.o.rows, r.o.rate)
	for _, h := range r.header {
		fmt.Fprintf(&b, "- %s\n", h)
	}
	step := (len(r.samples) + markdownRows - 1) / markdownRows
	if step > 1 {
		fmt.Fprintf(&b, "\nEvery %s row of the %d printed, and the last of each phase:\n", ordinal(step), len(r.samples))
	}
	b.WriteString("\n")
	table(&b, headerNames(), func(add func([]string)) {
		for i, x := range r.samples {
			lastOfPhase := i == len(r.samples)-1 || r.samples[i+1].phase != x.phase
			if (i+1)%step == 0 || lastOfPhase {
				add(x.cells())
			}
		}
	}, "phase")
	b.WriteString("\n")
	for _, l := range r.figures() {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	b.WriteString("\nFlat over the insert phase (the last quarter's mean against the second quarter's):\n\n")
	table(&b, flatHeader, func(add func([]string)) {
		for _, f := range r.flatnesses() {
			add(f.cells(r.o.tolerance))
		}
	}, "series", "flat")
	fmt.Fprintf(&b, "\n```\n%s\n```\n", r.verdict())
	return b.String()
}

// markdownRows is about the most table rows the Markdown file holds: a
// 10M-row run prints some 170.
const markdownRows = 30

func ordinal(n int) string {
	switch {
	case n%100 >= 11 && n%100 <= 13:
		return strconv.Itoa(n) + "th"
	case n%10 == 1:
		return strconv.Itoa(n) + "st"
	case n%10 == 2:
		return strconv.Itoa(n) + "nd"
	case n%10 == 3:
		return strconv.Itoa(n) + "rd"
	default:
		return strconv.Itoa(n) + "th"
	}
}

func headerNames() []string {
	out := make([]string, len(columns))
	for i, c := range columns {
		out[i] = c.name
	}
	return out
}

// table writes a Markdown table; the columns named in left are aligned
// left, the others (numbers) right.
func table(b *strings.Builder, header []string, rows func(add func([]string)), left ...string) {
	fmt.Fprintf(b, "| %s |\n|", strings.Join(header, " | "))
	for _, h := range header {
		if slices.Contains(left, h) {
			b.WriteString("---|")
		} else {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	rows(func(cells []string) { fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | ")) })
}

// memTotal is the machine's memory, in GiB.
func memTotal() string {
	v := relayproc.ProcField("/proc/meminfo", "MemTotal")
	kib, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64)
	if err != nil {
		return v
	}
	return fmt.Sprintf("%.1f GiB", kib/(1<<20))
}
