package eventlog

import (
	"os"

	"golang.org/x/sys/unix"
)

// Read-ahead for catching up. bbolt maps the file for random access, so a
// cold scan reads it a page fault at a time (~55 MB/s here). Events are
// appended with full pages at the end of the file, so the file offset of a
// sequence is roughly proportional to its place in the stream: a reader far
// behind asks the kernel to read the region ahead of it in the background.
const (
	readaheadMinLag = 16384    // events behind the head before reading ahead
	readaheadWindow = 64 << 20 // bytes advised at a time
	readaheadBehind = 8 << 20  // bytes before the estimate, for its error
)

// readahead tracks one reader's advice, so each region is advised once.
type readahead struct {
	nextAt uint64 // the sequence at which to advise again
}

// advise is called with the sequence about to be read. It costs a stat and
// an fadvise every readaheadWindow bytes of stream, and nothing when the
// reader is close to the head.
func (ra *readahead) advise(l *Log, stream string, next uint64) {
	if next < ra.nextAt {
		return
	}
	var si StreamInfo
	if err := l.View(func(tx *Tx) (err error) { si, err = tx.Info(stream); return err }); err != nil {
		return
	}
	if si.Count == 0 || si.Last < next+readaheadMinLag {
		ra.nextAt = next + readaheadMinLag
		return
	}
	perEvent := max(si.Bytes/si.Count, 1)
	ra.nextAt = next + readaheadWindow/2/perEvent
	f, err := os.Open(l.path)
	if err != nil {
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return
	}
	frac := float64(next-si.First) / float64(si.Count)
	off := max(int64(frac*float64(st.Size()))-readaheadBehind, 0)
	_ = unix.Fadvise(int(f.Fd()), off, readaheadWindow+readaheadBehind, unix.FADV_WILLNEED)
}
