package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress of the operator's tools (snapshot save/restore, export, import,
// check). It goes to stderr, never stdout, so a tool's output stays clean
// for pipes. On a terminal it is a bar redrawn in place (at most every
// progressRedrawInterval); otherwise, in logs and CI, it is a plain line
// every progressLineInterval. Either way a final line says what was done.
//
//	snapshot save [==========>             ]  43%  112.0 MiB / 260.3 MiB  38.2 MiB/s
//	export: 45000 / 100000 keys (45%), 12034 keys/s

const (
	progressRedrawInterval = 100 * time.Millisecond // terminal bar
	progressLineInterval   = 5 * time.Second        // plain lines
	progressBarWidthChars  = 30
)

// progressUnit formats an amount: bytes or a count of things.
type progressUnit int

const (
	unitBytes progressUnit = iota
	unitKeys
	unitLeases
)

func (u progressUnit) format(n int64) string {
	switch u {
	case unitBytes:
		return formatBytes(n)
	case unitLeases:
		return fmt.Sprintf("%d leases", n)
	default:
		return fmt.Sprintf("%d keys", n)
	}
}

func (u progressUnit) rate(perSec float64) string {
	if u == unitBytes {
		return formatBytes(int64(perSec)) + "/s"
	}
	return fmt.Sprintf("%.0f %s/s", perSec, strings.TrimPrefix(u.format(0), "0 "))
}

// formatBytes renders n in binary units, as the docs write sizes.
func formatBytes(n int64) string {
	const k = 1024
	switch {
	case n < k:
		return fmt.Sprintf("%d B", n)
	case n < k*k:
		return fmt.Sprintf("%.1f KiB", float64(n)/k)
	case n < k*k*k:
		return fmt.Sprintf("%.1f MiB", float64(n)/(k*k))
	default:
		return fmt.Sprintf("%.1f GiB", float64(n)/(k*k*k))
	}
}

// progress reports how far one piece of work got. Add may be called from
// one goroutine at a time; the methods are safe to call from several.
type progress struct {
	w     io.Writer
	tty   bool
	label string
	unit  progressUnit
	now   func() time.Time // time.Now; fixed in tests

	mu struct {
		sync.Mutex
		total    int64 // 0: unknown
		done     int64
		start    time.Time
		lastDraw time.Time
		drawn    bool // a bar is on the terminal line
	}
}

// newProgress reports to stderr, as a bar when stderr is a terminal.
func newProgress(label string, unit progressUnit, total int64) *progress {
	return newProgressTo(os.Stderr, isTerminal(os.Stderr), label, unit, total, time.Now)
}

func newProgressTo(w io.Writer, tty bool, label string, unit progressUnit, total int64, now func() time.Time) *progress {
	p := &progress{w: w, tty: tty, label: label, unit: unit, now: now}
	p.mu.total = total
	p.mu.start = now()
	p.mu.lastDraw = p.mu.start
	return p
}

// isTerminal reports whether f is a character device, which a terminal is
// and a pipe or a file is not. /dev/null is one too, harmlessly: it
// discards the bar.
func isTerminal(f *os.File) bool {
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// SetTotal sets the amount the work will reach, once known.
func (p *progress) SetTotal(total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.total = total
}

// Add records n more units done and redraws when it is time.
func (p *progress) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.done += n
	now := p.now()
	interval := progressLineInterval
	if p.tty {
		interval = progressRedrawInterval
	}
	if now.Sub(p.mu.lastDraw) < interval {
		return
	}
	p.mu.lastDraw = now
	p.drawLocked(now)
}

// Write counts the bytes written through it: a progress is an io.Writer
// for io.Copy's io.MultiWriter and io.TeeReader.
func (p *progress) Write(b []byte) (int, error) {
	p.Add(int64(len(b)))
	return len(b), nil
}

// Done ends the report with a final line: summary, which says what was
// done, and the elapsed time.
func (p *progress) Done(summary string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.drawn {
		fmt.Fprint(p.w, "\r\033[K") // clear the bar
		p.mu.drawn = false
	}
	elapsed := p.now().Sub(p.mu.start).Round(time.Millisecond)
	fmt.Fprintf(p.w, "%s: %s in %v\n", p.label, summary, elapsed)
}

// Stop clears a bar left on the terminal when the work ends without Done
// (an error), so the error message starts on a clean line. Deferred by
// every tool; after Done it does nothing.
func (p *progress) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.mu.drawn = false
	}
}

// drawLocked writes the current state.
// REQUIRES: p.mu held.
func (p *progress) drawLocked(now time.Time) {
	done, total := p.mu.done, p.mu.total
	rate := ""
	if secs := now.Sub(p.mu.start).Seconds(); secs > 0 {
		rate = p.unit.rate(float64(done) / secs)
	}
	if !p.tty {
		if total > 0 {
			fmt.Fprintf(p.w, "%s: %s / %s (%d%%), %s\n", p.label, p.unit.format(done), p.unit.format(total), percent(done, total), rate)
		} else {
			fmt.Fprintf(p.w, "%s: %s, %s\n", p.label, p.unit.format(done), rate)
		}
		return
	}
	var line string
	if total > 0 {
		filled := int(int64(progressBarWidthChars) * min(done, total) / total)
		bar := strings.Repeat("=", filled)
		if filled < progressBarWidthChars {
			bar += ">" + strings.Repeat(" ", progressBarWidthChars-filled-1)
		}
		line = fmt.Sprintf("%s [%s] %3d%%  %s / %s  %s", p.label, bar, percent(done, total), p.unit.format(done), p.unit.format(total), rate)
	} else {
		line = fmt.Sprintf("%s  %s  %s", p.label, p.unit.format(done), rate)
	}
	fmt.Fprint(p.w, "\r\033[K"+line)
	p.mu.drawn = true
}

func percent(done, total int64) int64 {
	if total <= 0 {
		return 0
	}
	return min(done, total) * 100 / total
}
