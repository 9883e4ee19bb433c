package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progressInterval is the least time between two updates of a bar.
const progressInterval = 100 * time.Millisecond

// barWidth is the number of characters between the brackets.
const barWidth = 25

// progress draws a progress bar on a terminal:
//
//	42% [==========>              ]  420 MiB / 1.0 GiB  312 MiB/s
//
// It redraws the line with \r at most every progressInterval, and ends it
// with a newline on Done. It draws nothing when its writer is not a
// terminal. It is safe for concurrent use.
type progress struct {
	mu      sync.Mutex
	w       io.Writer // nil: silent
	total   int64     // ≤ 0: unknown
	n       int64
	now     func() time.Time
	start   time.Time
	last    time.Time // of the last draw
	lastLen int       // of the last line drawn
	drawn   bool
}

// newProgress returns a bar over total bytes on w if w is a terminal, and
// a silent one otherwise.
func newProgress(w io.Writer, total int64) *progress {
	if !isTerminal(w) {
		w = nil
	}
	return newProgressTo(w, total, time.Now)
}

// newProgressTo returns a bar that draws on w (nil: nowhere) with the
// clock now.
func newProgressTo(w io.Writer, total int64, now func() time.Time) *progress {
	t := now()
	return &progress{w: w, total: total, now: now, start: t}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Reader returns r counting what is read through it into the bar.
func (p *progress) Reader(r io.Reader) io.Reader {
	return &progressReader{r: r, p: p}
}

type progressReader struct {
	r io.Reader
	p *progress
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	if n > 0 {
		pr.p.Add(int64(n))
	}
	return n, err
}

// Add counts n more bytes and redraws the bar if it is time to.
func (p *progress) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	if p.w == nil {
		return
	}
	t := p.now()
	if p.drawn && t.Sub(p.last) < progressInterval {
		return
	}
	p.draw(t)
}

// Done draws the final state of the bar and ends its line.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w == nil {
		return
	}
	p.draw(p.now())
	fmt.Fprint(p.w, "\n")
	p.w = nil
}

func (p *progress) draw(t time.Time) {
	line := renderProgress(p.n, p.total, t.Sub(p.start))
	pad := ""
	if len(line) < p.lastLen {
		pad = strings.Repeat(" ", p.lastLen-len(line))
	}
	fmt.Fprint(p.w, "\r"+line+pad)
	p.last, p.lastLen, p.drawn = t, len(line), true
}

// renderProgress formats one line of a bar: done bytes of total (≤ 0:
// unknown, then neither the percentage nor the bar is shown) after
// elapsed.
func renderProgress(done, total int64, elapsed time.Duration) string {
	var b strings.Builder
	if total > 0 {
		d := min(max(done, 0), total)
		pct := d * 100 / total
		fill := int(d * barWidth / total)
		bar := strings.Repeat("=", fill)
		if fill < barWidth {
			bar += ">" + strings.Repeat(" ", barWidth-fill-1)
		}
		fmt.Fprintf(&b, "%4d%% [%s]  %s / %s", pct, bar, formatBytes(done), formatBytes(total))
	} else {
		fmt.Fprintf(&b, "  %s", formatBytes(done))
	}
	if elapsed > 0 {
		rate := int64(float64(done) / elapsed.Seconds())
		fmt.Fprintf(&b, "  %s/s", formatBytes(rate))
	}
	return b.String()
}

// formatBytes formats n in binary units: 512 B, 1.5 KiB, 420 MiB, 1.0 GiB.
func formatBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	i := 0
	for (v >= 1024 || v <= -1024) && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v < 10 && v > -10 {
		return fmt.Sprintf("%.1f %s", v, units[i])
	}
	return fmt.Sprintf("%.0f %s", v, units[i])
}
