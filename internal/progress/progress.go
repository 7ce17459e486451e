// Package progress is the small interface long operations (convert, backup,
// restore) report through, with a no-op default and a terminal bar. Libraries
// only call it; commands choose whether a bar is shown (only on a terminal,
// never with --quiet or --json).
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Progress receives updates of one long operation. Add may be called from
// several goroutines.
type Progress interface {
	// Start begins a phase: what is shown as its label, total is the
	// number of bytes expected (0 if unknown).
	Start(what string, total int64)
	// Add records n more bytes done.
	Add(n int64)
	// Finish ends the phase.
	Finish()
}

// Nop discards updates.
var Nop Progress = nop{}

type nop struct{}

func (nop) Start(string, int64) {}
func (nop) Add(int64)           {}
func (nop) Finish()             {}

// OrNop returns p, or Nop when p is nil.
func OrNop(p Progress) Progress {
	if p == nil {
		return Nop
	}
	return p
}

// Bar draws a one-line bar with bytes, rate and ETA on a terminal, redrawn at
// most ten times a second.
type Bar struct {
	w     io.Writer
	mu    sync.Mutex
	what  string
	total int64
	done  atomic.Int64
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

// NewBar returns a bar that draws on w (a terminal).
func NewBar(w io.Writer) *Bar { return &Bar{w: w} }

func (b *Bar) Start(what string, total int64) {
	b.Finish()
	b.mu.Lock()
	b.what, b.total, b.start = what, total, time.Now()
	b.done.Store(0)
	b.stop = make(chan struct{})
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				b.draw(true)
				return
			case <-t.C:
				b.draw(false)
			}
		}
	}()
}

func (b *Bar) Add(n int64) { b.done.Add(n) }

func (b *Bar) Finish() {
	b.mu.Lock()
	stop := b.stop
	b.stop = nil
	b.mu.Unlock()
	if stop != nil {
		close(stop)
		b.wg.Wait()
	}
}

func (b *Bar) draw(final bool) {
	b.mu.Lock()
	what, total, start := b.what, b.total, b.start
	b.mu.Unlock()
	done := b.done.Load()
	el := time.Since(start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	line := fmt.Sprintf("%s %s", what, Bytes(done))
	if total > 0 {
		frac := min(float64(done)/float64(total), 1)
		const width = 30
		n := int(frac * width)
		line = fmt.Sprintf("%s [%s%s] %5.1f%% %s/%s", what, strings.Repeat("=", n), strings.Repeat(" ", width-n), frac*100, Bytes(done), Bytes(total))
		if rate > 0 && !final {
			eta := time.Duration(float64(total-done)/rate) * time.Second
			line += fmt.Sprintf(" ETA %s", eta.Round(time.Second))
		}
	}
	line += fmt.Sprintf(" %s/s", Bytes(int64(rate)))
	end := "\r"
	if final {
		end = "\n"
	}
	fmt.Fprintf(b.w, "\r\033[K%s%s", line, end)
}

// Bytes formats a byte count with binary units.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
