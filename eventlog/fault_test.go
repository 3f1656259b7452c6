//go:build linux

package eventlog_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// Fault injection without hooks in the journal's code: Options.OpenFile
// hands the test the *os.File bbolt writes through, and the test swaps the
// descriptor under it (dup3) for a read-only one on the same file. bbolt's
// next write then fails with EBADF, exactly where a failing disk would make
// it fail, while its memory map, and so every read, still works. A dup of
// the original descriptor keeps the journal's lock held meanwhile.

// faultFile opens journals through OpenFile and can break their writes.
type faultFile struct {
	mu    sync.Mutex
	files map[string]*os.File
	kept  []int // dups of the original descriptors, holding their locks
}

func (ff *faultFile) openFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err == nil {
		ff.mu.Lock()
		if ff.files == nil {
			ff.files = map[string]*os.File{}
		}
		ff.files[name] = f
		ff.mu.Unlock()
	}
	return f, err
}

// breakWrites makes every later write to the journal at path fail.
func (ff *faultFile) breakWrites(t *testing.T, path string) {
	t.Helper()
	ff.mu.Lock()
	defer ff.mu.Unlock()
	f := ff.files[path]
	require.NotNil(t, f, "journal not opened through the hook")
	fd := int(f.Fd())
	kept, err := syscall.Dup(fd)
	require.NoError(t, err)
	ff.kept = append(ff.kept, kept)
	ro, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	require.NoError(t, err)
	require.NoError(t, syscall.Dup3(ro, fd, syscall.O_CLOEXEC))
	require.NoError(t, syscall.Close(ro))
}

// release closes the kept descriptors, and with them the old lock.
func (ff *faultFile) release() {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	for _, fd := range ff.kept {
		_ = syscall.Close(fd)
	}
	ff.kept = nil
}

// closeWithin closes l and fails the test if Close does not return in time.
func closeWithin(t *testing.T, l *eventlog.Log, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Close did not return within %v", d)
		return nil
	}
}

func TestStickyWriteError(t *testing.T) {
	for _, c := range []struct {
		name string
		opts eventlog.Options
	}{
		{name: "fsync-every-commit"},
		{name: "sync-interval", opts: eventlog.Options{SyncInterval: time.Hour}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal.db")
			l, err := eventlog.Open(path, nil) // created without the hook
			require.NoError(t, err)
			require.NoError(t, l.Close())

			ff := &faultFile{}
			t.Cleanup(ff.release)
			opts := c.opts
			opts.OpenFile = ff.openFile
			l, err = eventlog.Open(path, &opts)
			require.NoError(t, err)
			acked := map[string]uint64{}
			for i := range 10 {
				data := fmt.Sprintf("before %d", i)
				res, err := l.Append("events", eventlog.Event{Type: "fault.before", Data: []byte(data)})
				require.NoError(t, err)
				acked[data] = res[0].Seq
			}
			require.NoError(t, l.CommitOffset("events", "reader", 4))
			sub, err := l.Subscribe("events", eventlog.Earliest())
			require.NoError(t, err)

			ff.breakWrites(t, path)

			// Appenders racing the failure: each gets nil or the sticky
			// error, and afterwards the journal holds exactly the nils.
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				errs []error
			)
			for a := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; ; n++ {
						data := fmt.Sprintf("racer %d %d", a, n)
						res, err := l.Append("events", eventlog.Event{Type: "fault.race", Data: []byte(data)})
						mu.Lock()
						if err != nil {
							errs = append(errs, err)
							mu.Unlock()
							return
						}
						acked[data] = res[0].Seq
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			first := errs[0]
			require.ErrorIs(t, first, syscall.EBADF)
			require.NotErrorIs(t, first, eventlog.ErrDiskFull)
			require.Contains(t, first.Error(), "appends are refused until reopened")
			for _, err := range errs {
				require.Equal(t, first, err, "every failed append returns the one sticky error")
			}

			// Every later write returns the same error and runs nothing.
			_, err = l.Append("events", eventlog.Event{Type: "fault.after"})
			require.Equal(t, first, err)
			_, err = l.Append("other", eventlog.Event{Type: "fault.after"})
			require.Equal(t, first, err, "the error is the journal's, not the stream's")
			called := false
			require.Equal(t, first, l.Update(func(*eventlog.Tx) error { called = true; return nil }))
			require.False(t, called)
			require.Equal(t, first, l.CommitOffset("events", "reader", 5))
			_, err = l.Truncate("events", 3, eventlog.Force)
			require.Equal(t, first, err)

			// Reads still work and see the committed state.
			requireHolds(t, l, "events", acked)
			off, ok, err := l.Offset("events", "reader")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, uint64(4), off)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e, err := sub.Next(ctx)
			require.NoError(t, err)
			require.Equal(t, uint64(1), e.Seq)
			rep, err := l.Check(ctx)
			require.NoError(t, err)
			require.True(t, rep.OK(), "%v", rep.Problems)

			require.NoError(t, closeWithin(t, l, 10*time.Second))
			ff.release()

			// Reopened: the acknowledged events, nothing more; appends work.
			l, err = eventlog.Open(path, nil)
			require.NoError(t, err)
			defer l.Close()
			requireHolds(t, l, "events", acked)
			res, err := l.Append("events", eventlog.Event{Type: "fault.reopened"})
			require.NoError(t, err)
			require.Equal(t, uint64(len(acked)+1), res[0].Seq)
		})
	}
}

// requireHolds checks that stream holds exactly the acknowledged events
// (data -> seq), with dense seqs from 1.
func requireHolds(t *testing.T, l *eventlog.Log, stream string, acked map[string]uint64) {
	t.Helper()
	si, err := l.Info(stream)
	require.NoError(t, err)
	require.Equal(t, uint64(len(acked)), si.Last)
	n := 0
	for e, err := range l.Scan(stream, 1, 0) {
		require.NoError(t, err)
		seq, ok := acked[string(e.Data)]
		require.True(t, ok, "seq %d (%q) was never acknowledged", e.Seq, e.Data)
		require.Equal(t, seq, e.Seq)
		n++
	}
	require.Equal(t, len(acked), n)
}

// TestPanicInCommitIsContained damages the freelist page under an open
// journal, so that bbolt panics inside Commit (it frees the old freelist
// page by the id in that page's header). The panic must come back as a
// sticky *CorruptError, and Close must still return: before the fix the
// panicking write transaction was never rolled back and kept bbolt's write
// lock, which Close waits for.
func TestPanicInCommitIsContained(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	l, err := eventlog.Open(path, nil)
	require.NoError(t, err)
	acked := map[string]uint64{}
	for i := range 5 {
		data := fmt.Sprintf("before %d", i)
		res, err := l.Append("events", eventlog.Event{Type: "fault.before", Data: []byte(data)})
		require.NoError(t, err)
		acked[data] = res[0].Seq
	}

	// The freelist page named by the newer meta page; its header starts
	// with its own page id. Write 0 there through another descriptor: the
	// journal's memory map sees it.
	off := freelistPage(t, path)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	var orig [8]byte
	_, err = f.ReadAt(orig[:], off)
	require.NoError(t, err)
	_, err = f.WriteAt(binary.LittleEndian.AppendUint64(nil, 0), off)
	require.NoError(t, err)

	var appendErr error
	noPanic(t, "Append", func() {
		_, appendErr = l.Append("events", eventlog.Event{Type: "fault.panic"})
	})
	require.ErrorIs(t, appendErr, eventlog.ErrCorrupt)
	var ce *eventlog.CorruptError
	require.ErrorAs(t, appendErr, &ce)
	require.Equal(t, path, ce.Path)
	_, err = l.Append("events", eventlog.Event{Type: "fault.after"})
	require.Equal(t, appendErr, err, "the failure is sticky")
	requireHolds(t, l, "events", acked)
	require.NoError(t, closeWithin(t, l, 10*time.Second))

	// Undo the damage: the journal holds what was acknowledged.
	_, err = f.WriteAt(orig[:], off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	l, err = eventlog.Open(path, nil)
	require.NoError(t, err)
	defer l.Close()
	requireHolds(t, l, "events", acked)
	rep, err := l.Check(context.Background())
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	_, err = l.Append("events", eventlog.Event{Type: "fault.reopened"})
	require.NoError(t, err)
}
