package eventlog

import (
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// WriteTo writes a consistent copy of the journal to w, as it stood when the
// call began, and returns the number of bytes written. The copy is a whole
// journal file: written to disk it opens with Open like the original. It
// holds the pages in use (the file's preallocated tail is left out), with
// the original's journal ID.
//
// WriteTo runs in one read transaction for the whole copy, so appends and
// other writes keep committing meanwhile, and the copy sees none of them.
// That transaction holds back bbolt's memory map: a commit that must grow
// the file past its current map waits until the copy ends, and pages freed
// meanwhile are reused only after it. It works on a journal opened
// read-only too.
//
// w's own error is returned as it is, wrapped: a writer that stops on a
// cancelled context makes errors.Is(err, context.Canceled) hold. A Log
// satisfies io.WriterTo.
func (l *Log) WriteTo(w io.Writer) (int64, error) {
	ew := &firstErrWriter{w: w}
	var n int64
	err := l.view(func(btx *bolt.Tx) error {
		var err error
		n, err = btx.WriteTo(ew)
		return err
	})
	if ew.err != nil {
		err = ew.err // bbolt formats some of w's errors with %s, losing them
	}
	if err != nil {
		return n, fmt.Errorf("flowrt/eventlog: copy %s: %w", l.path, err)
	}
	return n, nil
}

// firstErrWriter passes writes to w and keeps the first error w returned.
type firstErrWriter struct {
	w   io.Writer
	err error
}

func (f *firstErrWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil && f.err == nil {
		f.err = err
	}
	return n, err
}
