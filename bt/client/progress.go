package client

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// ProgressPrinter shows Get's progress on w: a progress bar when w is a
// terminal, a plain line every Every (and at the end) otherwise. Pass its
// Update as GetConfig.Progress. It is not safe for concurrent use.
type ProgressPrinter struct {
	w     io.Writer
	tty   bool
	every time.Duration

	bar  *progressbar.ProgressBar // the terminal's bar, once the length is known
	last time.Time                // when the last plain line was written
	done bool
}

// NewProgressPrinter returns a printer writing to w, as a bar when tty is
// set, or plain lines at most every interval.
func NewProgressPrinter(w io.Writer, tty bool, every time.Duration) *ProgressPrinter {
	return &ProgressPrinter{w: w, tty: tty, every: every}
}

// Update shows p.
func (pp *ProgressPrinter) Update(p Progress) {
	if pp.done {
		return
	}
	if pp.tty {
		pp.updateBar(p)
	} else {
		pp.updateLine(p)
	}
	pp.done = p.Done
}

func (pp *ProgressPrinter) updateBar(p Progress) {
	if p.Length == 0 {
		return // a magnet's info is not in yet
	}
	if pp.bar == nil {
		pp.bar = progressbar.NewOptions64(p.Length,
			progressbar.OptionSetWriter(pp.w),
			progressbar.OptionSetDescription(p.Name),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(pp.w) }),
		)
	}
	pp.bar.Describe(fmt.Sprintf("%s (%d peers)", p.Name, p.Peers))
	pp.bar.Set64(p.Bytes)
	if p.Done {
		pp.bar.Finish()
	}
}

func (pp *ProgressPrinter) updateLine(p Progress) {
	now := time.Now()
	if !p.Done && now.Sub(pp.last) < pp.every {
		return
	}
	pp.last = now
	fmt.Fprintln(pp.w, FormatProgress(p))
}

// FormatProgress describes p on one line.
func FormatProgress(p Progress) string {
	if p.Length == 0 {
		return fmt.Sprintf("fetching the info dictionary: %d peers, %s", p.Peers, p.Elapsed.Round(time.Millisecond))
	}
	pct := 100 * float64(p.Bytes) / float64(p.Length)
	rate := float64(p.Down)
	if p.Done && p.Elapsed > 0 {
		rate = float64(p.Bytes) / p.Elapsed.Seconds() // the average, at the end
	}
	state := "downloading"
	if p.Done {
		state = "complete, every piece verified"
	}
	return fmt.Sprintf("%s: %s, %.1f%% (%s of %s, %d/%d pieces), %d peers, %s/s, %s",
		p.Name, state, pct, IEC(p.Bytes), IEC(p.Length), p.Pieces, p.Total, p.Peers, IEC(int64(rate)), p.Elapsed.Round(time.Millisecond))
}

// IEC formats n bytes with a binary unit.
func IEC(n int64) string {
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
