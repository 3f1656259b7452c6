//go:build linux

package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

// mountTmpfs mounts a tmpfs of size bytes in a new temporary directory and
// unmounts it in Cleanup. It skips the test when it cannot (not root, or no
// CAP_SYS_ADMIN in a container).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs that fills up")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	require.NoError(t, os.Mkdir(dir, 0o755))
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// diskFullPayload is the data of an acknowledged event: unique per
// appender and count, so the journal's contents can be matched with what
// Append acknowledged.
func diskFullPayload(appender, n int) []byte {
	return fmt.Appendf(make([]byte, 0, 2048), "appender %d event %d %01800d", appender, n, 0)
}

func TestDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, 4<<20)
	// Ballast taken before the journal, freed after the disk fills, so
	// that the test can show the error stays even once space is back.
	ballast := filepath.Join(mnt, "ballast")
	require.NoError(t, os.WriteFile(ballast, make([]byte, 512<<10), 0o644))

	path := filepath.Join(mnt, "journal.db")
	l, err := eventlog.Open(path, nil)
	require.NoError(t, err)

	// Four appenders group-commit until the disk is full.
	const appenders = 4
	var (
		mu    sync.Mutex
		acked = map[string]uint64{} // payload -> seq
		errs  []error
		wg    sync.WaitGroup
	)
	for a := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 100000; n++ {
				data := diskFullPayload(a, n)
				res, err := l.Append("events", eventlog.Event{Type: "disk.fill", Data: data})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				acked[string(data)] = res[0].Seq
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, errs, appenders, "every appender stops on an error")
	require.NotEmpty(t, acked, "nothing was appended before the disk filled")
	first := errs[0]
	require.ErrorIs(t, first, eventlog.ErrDiskFull)
	require.ErrorIs(t, first, syscall.ENOSPC)
	for _, err := range errs {
		require.ErrorIs(t, err, eventlog.ErrDiskFull)
	}
	t.Logf("%d events acknowledged before: %v", len(acked), first)

	// The error is sticky, even once there is space again.
	require.NoError(t, os.Remove(ballast))
	_, err = l.Append("events", eventlog.Event{Type: "disk.after"})
	require.Equal(t, first, err, "Append after the failure returns the same error")
	called := false
	err = l.Update(func(*eventlog.Tx) error { called = true; return nil })
	require.Equal(t, first, err, "Update after the failure returns the same error")
	require.False(t, called, "Update runs nothing once writes have failed")
	require.Equal(t, first, l.CommitOffset("events", "c", 1))

	// Reads keep working, and see exactly the acknowledged events.
	requireJournalHolds(t, l, acked)
	rep, err := l.Check(context.Background())
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.NoError(t, l.Close())

	// Reopened, on the same file system: everything acknowledged is there,
	// nothing else, and appends work again now that there is space.
	l, err = eventlog.Open(path, nil)
	require.NoError(t, err)
	defer l.Close()
	requireJournalHolds(t, l, acked)
	rep, err = l.Check(context.Background())
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	res, err := l.Append("events", eventlog.Event{Type: "disk.after"})
	require.NoError(t, err)
	require.Equal(t, uint64(len(acked)+1), res[0].Seq)
}

// requireJournalHolds checks that stream "events" holds exactly the
// acknowledged events, with dense seqs from 1.
func requireJournalHolds(t *testing.T, l *eventlog.Log, acked map[string]uint64) {
	t.Helper()
	si, err := l.Info("events")
	require.NoError(t, err)
	require.Equal(t, uint64(len(acked)), si.Last, "head")
	require.Equal(t, uint64(len(acked)), si.Count)
	seen := 0
	for e, err := range l.Scan("events", 1, 0) {
		require.NoError(t, err)
		seq, ok := acked[string(e.Data)]
		require.True(t, ok, "seq %d was never acknowledged", e.Seq)
		require.Equal(t, seq, e.Seq)
		seen++
	}
	require.Equal(t, len(acked), seen)
}

// TestDiskFullAtCreate: a journal that cannot be created on a full disk is
// reported as ErrDiskFull and leaves no file behind.
func TestDiskFullAtCreate(t *testing.T) {
	mnt := mountTmpfs(t, 64<<10)
	f, err := os.Create(filepath.Join(mnt, "ballast"))
	require.NoError(t, err)
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			require.True(t, errors.Is(err, syscall.ENOSPC), "%v", err)
			break
		}
	}
	require.NoError(t, f.Close())
	path := filepath.Join(mnt, "journal.db")
	l, err := eventlog.Open(path, nil)
	require.Nil(t, l)
	require.ErrorIs(t, err, eventlog.ErrDiskFull)
	ents, err := os.ReadDir(mnt)
	require.NoError(t, err)
	require.Len(t, ents, 1, "only the ballast is left: %v", ents)
}
