package command

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// progressUnit says what a progress bar counts, and so how it shows the
// amounts and the rate.
type progressUnit int

// Units of a progress bar.
const (
	progressBytes  progressUnit = iota // bytes: "12 MiB/40 MiB, 8.0 MiB/s"
	progressEvents                     // events: "1200/5000, 830 events/s"
)

// progressThrottle is how often progress is polled (see watchFileSize).
const progressThrottle = 100 * time.Millisecond

// progressRedraw is the shortest time between two redraws of a bar; tests
// set it to 0 to see every update.
var progressRedraw = progressThrottle

// isTerminal reports whether w is a terminal: an *os.File whose descriptor
// term.IsTerminal accepts. Tests replace it to draw bars into a buffer.
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// showProgress reports whether cmd draws progress bars: not with --quiet
// (quiet true), and only when the command's stderr is a terminal, so that
// nothing extra reaches a pipe, a file or a log.
func showProgress(cmd *cobra.Command, quiet bool) bool {
	return !quiet && isTerminal(cmd.ErrOrStderr())
}

// progressBar draws the progress of one long operation on the command's
// stderr: a bar, the amount done, the rate, and the elapsed and remaining
// time ("[3s:12s]"). The bar is cleared when Done is called, so the
// command's own output starts on a clean line.
//
// A nil *progressBar is valid: every method does nothing. newProgressBar
// returns nil when progress is off, so callers report progress without
// checking. A progressBar is safe for concurrent use.
type progressBar struct {
	bar     *progressbar.ProgressBar
	unknown bool // the total is unknown: the bar counts without a percentage
}

// newProgressBar returns a bar for work of total units (bytes or events),
// labelled desc, drawn on cmd's stderr when showProgress(cmd, quiet), and
// nil otherwise. A total of 0 or less means unknown: the bar then shows the
// amount and the rate without a percentage or ETA. It starts no goroutine:
// the bar is redrawn by Set and Add, at most every progressRedraw.
func newProgressBar(cmd *cobra.Command, quiet bool, desc string, total int64, unit progressUnit) *progressBar {
	if !showProgress(cmd, quiet) {
		return nil
	}
	unknown := total <= 0
	if unknown {
		total = -1
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(progressRedraw),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSpinnerType(14),
		// No ticker goroutine for an unknown total: Set and Add redraw.
		progressbar.OptionSetSpinnerChangeInterval(0),
	}
	switch unit {
	case progressBytes:
		opts = append(opts, progressbar.OptionShowBytes(true), progressbar.OptionUseIECUnits(true))
	case progressEvents:
		opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"))
	}
	return &progressBar{bar: progressbar.NewOptions64(total, opts...), unknown: unknown}
}

// Set moves the bar to done units of total. A total of 0 or less keeps the
// bar's total. A done at or beyond the total raises the total past it,
// since a total is often an estimate (a file's size bounds the pages
// copied from it), and only Done completes the bar. A bar made with an
// unknown total ignores total.
func (p *progressBar) Set(done, total int64) {
	if p == nil {
		return
	}
	if !p.unknown {
		limit := p.bar.GetMax64()
		if total > 0 && total != limit {
			limit = total
			p.bar.ChangeMax64(limit)
		}
		if done >= limit {
			p.bar.ChangeMax64(done + 1)
		}
	}
	_ = p.bar.Set64(done) // drawing errors are not the command's
}

// Add moves the bar n units on, raising the total if needed as Set does.
func (p *progressBar) Add(n int64) {
	if p == nil {
		return
	}
	if !p.unknown {
		if st := p.bar.State(); st.CurrentNum+n >= st.Max {
			p.bar.ChangeMax64(st.CurrentNum + n + 1)
		}
	}
	_ = p.bar.Add64(n) // drawing errors are not the command's
}

// Describe changes the bar's label, for work done in phases.
func (p *progressBar) Describe(desc string) {
	if p == nil {
		return
	}
	p.bar.Describe(desc)
}

// Done completes the bar and clears it from the terminal. Call it before
// printing the command's result; it is idempotent.
func (p *progressBar) Done() {
	if p == nil || p.bar.IsFinished() {
		return
	}
	_ = p.bar.Finish()
}
