package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// withSyncFile replaces the file sink's fsync for the test.
func withSyncFile(t *testing.T, sync func(*os.File) error) {
	t.Helper()
	orig := syncFile
	syncFile = sync
	t.Cleanup(func() { syncFile = orig })
}

// TestFileSinkDeliverReturnsAfterAnFsyncOfItsLine: Deliver returns nil
// only once an fsync has covered its line.
func TestFileSinkDeliverReturnsAfterAnFsyncOfItsLine(t *testing.T) {
	var covered atomic.Int64 // bytes of the file an fsync has covered
	withSyncFile(t, func(f *os.File) error {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		covered.Store(fi.Size())
		return nil
	})
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s := FileSink(path)
	for i := range 5 {
		require.NoError(t, s.Deliver(context.Background(), Delivery{ID: "e", Flow: "f", Payload: i}))
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, fi.Size(), covered.Load(), "delivery %d returned before an fsync covered it", i)
	}
	require.NoError(t, s.(*fileSink).Close())
}

// TestFileSinkFsyncErrorReachesEveryWaiter: when the fsync that deliveries
// wait for fails, every one of them gets the error, and so does every
// later delivery: the file may end with a line that is not durable.
func TestFileSinkFsyncErrorReachesEveryWaiter(t *testing.T) {
	errSync := errors.New("fsync failed")
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	withSyncFile(t, func(*os.File) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release // the others write their lines and wait meanwhile
		}
		return errSync
	})
	s := FileSink(filepath.Join(t.TempDir(), "out.jsonl"))
	const n = 4
	errs := make(chan error, n)
	var wg sync.WaitGroup
	wg.Go(func() { errs <- s.Deliver(context.Background(), Delivery{ID: "lead", Flow: "f"}) })
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the first delivery never fsynced")
	}
	for range n - 1 {
		wg.Go(func() { errs <- s.Deliver(context.Background(), Delivery{ID: "waiter", Flow: "f"}) })
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.ErrorIs(t, err, errSync)
	}
	require.ErrorIs(t, s.Deliver(context.Background(), Delivery{ID: "later", Flow: "f"}), errSync, "sticky")
	require.NoError(t, s.(*fileSink).Close(), "nothing left to sync: the error was reported")
}
