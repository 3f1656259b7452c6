package snapshot_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/snapshot"
)

// deadline bounds every wait on another goroutine in these tests.
const deadline = 10 * time.Second

// scanAll returns every event of stream in l.
func scanAll(t testing.TB, l *eventlog.Log, stream string) []eventlog.Event {
	t.Helper()
	var out []eventlog.Event
	for e, err := range l.Scan(stream, 1, 0) {
		require.NoError(t, err, "scan %q", stream)
		out = append(out, e)
	}
	return out
}

// temporaries returns the temporary files Backup or Restore left in dir.
func temporaries(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.tmp"))
	require.NoError(t, err)
	return names
}

// storeMax raises v to seq unless it is already higher.
func storeMax(v *atomic.Uint64, seq uint64) {
	for {
		cur := v.Load()
		if seq <= cur || v.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// writers appends to streams from n goroutines until stop is called, and
// records per stream the highest sequence acknowledged so far.
type writers struct {
	acked   map[string]*atomic.Uint64
	started chan struct{} // one send per goroutine once it has appended a while
	stopc   chan struct{}
	wg      sync.WaitGroup
	errs    chan error
	once    sync.Once
}

func startWriters(t testing.TB, l *eventlog.Log, streams []string, n, batch int, size int) *writers {
	w := &writers{
		acked:   map[string]*atomic.Uint64{},
		started: make(chan struct{}, n),
		stopc:   make(chan struct{}),
		errs:    make(chan error, n),
	}
	for _, s := range streams {
		w.acked[s] = new(atomic.Uint64)
	}
	for g := range n {
		stream := streams[g%len(streams)]
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-w.stopc:
					return
				default:
				}
				events := make([]eventlog.Event, 1+i%batch)
				for j := range events {
					data := fmt.Appendf(nil, "writer %d append %d event %d ", g, i, j)
					data = append(data, bytes.Repeat([]byte{'a' + byte(j%26)}, size)...)
					events[j] = eventlog.Event{Type: "load.tick", Key: fmt.Sprint(g), Headers: map[string]string{"i": fmt.Sprint(i)}, Data: data}
				}
				res, err := l.Append(stream, events...)
				if err != nil {
					w.errs <- fmt.Errorf("writer %d: %w", g, err)
					return
				}
				storeMax(w.acked[stream], res[len(res)-1].Seq)
				if i == 20 {
					w.started <- struct{}{}
				}
			}
		}()
	}
	t.Cleanup(w.stop)
	return w
}

// waitStarted waits until every goroutine has appended a while.
func (w *writers) waitStarted(t testing.TB) {
	t.Helper()
	timeout := time.After(deadline)
	for range cap(w.started) {
		select {
		case <-w.started:
		case err := <-w.errs:
			t.Fatal(err)
		case <-timeout:
			t.Fatal("writers did not start appending")
		}
	}
}

// stop stops the goroutines and waits for them. It is idempotent.
func (w *writers) stop() {
	w.once.Do(func() {
		close(w.stopc)
		w.wg.Wait()
		close(w.errs)
	})
}

// snapshotAcked returns the highest acknowledged sequence of each stream.
func (w *writers) snapshotAcked() map[string]uint64 {
	out := map[string]uint64{}
	for s, v := range w.acked {
		out[s] = v.Load()
	}
	return out
}

func TestBackupDuringAppendsRestoresEveryAckedEvent(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	streams := []string{"orders", "payments", "audit"}
	for _, s := range streams {
		flowtest.MustAppend(t, l, s, bigEvents(2000, 300)...)
	}
	require.NoError(t, l.CommitOffset("orders", "billing", 250))

	w := startWriters(t, l, streams, 4, 8, 200)
	w.waitStarted(t)
	before := w.snapshotAcked() // every event up to these was acknowledged before Backup began

	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.db")
	rep, err := snapshot.Backup(context.Background(), l, backup, nil)
	during := w.snapshotAcked()
	w.stop()
	for err := range w.errs {
		t.Error(err)
	}
	require.NoError(t, err, "backup")
	assert.True(t, rep.Check.OK())
	assert.Equal(t, backup, rep.Path)
	assert.Positive(t, rep.Bytes)
	assert.Empty(t, temporaries(t, dir))

	restored := filepath.Join(t.TempDir(), "restored.db")
	rrep, err := snapshot.Restore(context.Background(), backup, restored, nil)
	require.NoError(t, err, "restore")
	assert.Equal(t, rep.Streams, rrep.Streams, "the restore holds what the backup reported")
	flowtest.MustCheck(t, restored)

	var appended uint64
	for s, seq := range during {
		appended += seq - before[s]
	}
	t.Logf("backup: %d bytes in %v; %d events acknowledged from its call to its return", rep.Bytes, rep.Took, appended)

	r := flowtest.MustOpenLogAt(t, restored, nil)
	assert.Equal(t, l.ID(), r.ID(), "a restored journal keeps its ID")
	for _, s := range streams {
		got := scanAll(t, r, s)
		require.GreaterOrEqual(t, uint64(len(got)), before[s], "stream %q: events acknowledged before the backup", s)
		require.Equal(t, got, scanAll(t, l, s)[:len(got)], "stream %q: restored events equal the live journal's", s)
	}
	off, ok, err := r.Offset("orders", "billing")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, uint64(250), off)

	// The restored journal is in service: appends continue its sequences.
	info, err := r.Info("orders")
	require.NoError(t, err)
	res := flowtest.MustAppend(t, r, "orders", flowtest.Event("after.restore", "x"))
	assert.Equal(t, info.Last+1, res[0].Seq)
}

func TestBackupReportsProgress(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "orders", bigEvents(600, 4<<10)...) // a few MiB: several reports
	type call struct{ written, total int64 }
	var calls []call
	path := filepath.Join(t.TempDir(), "backup.db")
	rep, err := snapshot.Backup(context.Background(), l, path, &snapshot.BackupOptions{
		Progress: func(written, total int64) { calls = append(calls, call{written, total}) },
	})
	require.NoError(t, err)
	require.Greater(t, len(calls), 2)
	for i, c := range calls {
		assert.LessOrEqual(t, c.written, c.total, "call %d", i)
		if i > 0 {
			assert.Greater(t, c.written, calls[i-1].written, "call %d", i)
		}
	}
	assert.Equal(t, call{rep.Bytes, rep.Bytes}, calls[len(calls)-1], "the last call reports the whole copy")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, fi.Size(), rep.Bytes)
}

// bigEvents returns n events of size bytes of data each.
func bigEvents(n, size int) []eventlog.Event {
	out := make([]eventlog.Event, n)
	for i := range out {
		out[i] = eventlog.Event{Type: "big.event", Data: append(fmt.Appendf(nil, "%d:", i), bytes.Repeat([]byte{'b'}, size)...)}
	}
	return out
}

func TestBackupDestination(t *testing.T) {
	tests := []struct {
		name      string
		dest      func(t *testing.T, l *eventlog.Log, dir string) string // prepares and returns the destination
		overwrite bool
		wantErr   []error // nil: success
		unchanged bool    // the destination keeps its bytes
	}{
		{
			name: "new path",
			dest: func(t *testing.T, _ *eventlog.Log, dir string) string { return filepath.Join(dir, "backup.db") },
		},
		{
			name:      "existing file is refused",
			dest:      existingFile,
			wantErr:   []error{snapshot.ErrExists},
			unchanged: true,
		},
		{
			name:      "existing file with Overwrite is replaced",
			dest:      existingFile,
			overwrite: true,
		},
		{
			name:      "the journal itself, even with Overwrite",
			dest:      func(t *testing.T, l *eventlog.Log, _ string) string { return l.Path() },
			overwrite: true,
			wantErr:   []error{snapshot.ErrInUse},
			unchanged: true,
		},
		{
			name: "another journal in use, even with Overwrite",
			dest: func(t *testing.T, _ *eventlog.Log, dir string) string {
				return flowtest.MustOpenLogAt(t, filepath.Join(dir, "other.db"), nil).Path()
			},
			overwrite: true,
			wantErr:   []error{snapshot.ErrInUse, eventlog.ErrLocked},
			unchanged: true,
		},
		{
			name: "a directory, even with Overwrite",
			dest: func(t *testing.T, _ *eventlog.Log, dir string) string {
				p := filepath.Join(dir, "sub")
				require.NoError(t, os.Mkdir(p, 0o755))
				return p
			},
			overwrite: true,
			wantErr:   []error{snapshot.ErrExists},
		},
		{
			name: "a missing directory",
			dest: func(t *testing.T, _ *eventlog.Log, dir string) string {
				return filepath.Join(dir, "missing", "backup.db")
			},
			wantErr: []error{fs.ErrNotExist},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := flowtest.MustOpenLog(t, nil)
			flowtest.MustAppend(t, l, "orders", flowtest.Events(10, "order.created")...)
			dir := t.TempDir()
			dest := tt.dest(t, l, dir)
			var before []byte
			if tt.unchanged {
				var err error
				before, err = os.ReadFile(dest)
				require.NoError(t, err)
			}

			rep, err := snapshot.Backup(context.Background(), l, dest, &snapshot.BackupOptions{Overwrite: tt.overwrite})
			if tt.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, dest, rep.Path)
				require.Len(t, rep.Streams, 1)
				assert.Equal(t, uint64(10), rep.Streams[0].Last)
				assert.Equal(t, uint64(10), flowtest.MustCheck(t, dest).Events)
			} else {
				for _, want := range tt.wantErr {
					require.ErrorIs(t, err, want)
				}
				assert.Zero(t, rep)
			}
			if tt.unchanged {
				after, err := os.ReadFile(dest)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(before, after), "the destination was changed")
			}
			assert.Empty(t, temporaries(t, filepath.Dir(dest)))
			assert.Empty(t, temporaries(t, dir))
		})
	}
}

// existingFile puts a file that is not a journal at the destination.
func existingFile(t *testing.T, _ *eventlog.Log, dir string) string {
	p := filepath.Join(dir, "backup.db")
	require.NoError(t, os.WriteFile(p, []byte("an earlier file, keep me"), 0o644))
	return p
}

func TestBackupCancelled(t *testing.T) {
	tests := []struct {
		name   string
		cancel func(cancel context.CancelFunc) (before bool, progress func(written, total int64))
	}{
		{
			name: "before the copy",
			cancel: func(cancel context.CancelFunc) (bool, func(int64, int64)) {
				return true, nil
			},
		},
		{
			name: "during the copy",
			cancel: func(cancel context.CancelFunc) (bool, func(int64, int64)) {
				return false, func(written, total int64) {
					if written < total {
						cancel()
					}
				}
			},
		},
		{
			name: "after the copy, during verification",
			cancel: func(cancel context.CancelFunc) (bool, func(int64, int64)) {
				return false, func(written, total int64) {
					if written == total {
						cancel()
					}
				}
			},
		},
	}
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "orders", bigEvents(600, 4<<10)...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			before, progress := tt.cancel(cancel)
			if before {
				cancel()
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "backup.db")
			_, err := snapshot.Backup(ctx, l, path, &snapshot.BackupOptions{Progress: progress})
			require.ErrorIs(t, err, context.Canceled)
			assert.NoFileExists(t, path)
			assert.Empty(t, temporaries(t, dir))
		})
	}
}

// restoreBase is a backup made once per test, holding a record whose data
// (payload) occurs once in the file, for cases to damage.
type restoreBase struct {
	path    string
	payload []byte
}

func makeRestoreBase(t *testing.T) restoreBase {
	t.Helper()
	l := flowtest.MustOpenLog(t, nil)
	payload := []byte("damage-me-9c1f27e4")
	// Larger than a chunk: stored alone, contiguous, under its own key.
	big := eventlog.Event{Type: "big.event", Data: append(bytes.Clone(payload), bytes.Repeat([]byte{'z'}, 9<<10)...)}
	events := append(flowtest.Events(50, "order.created"), big)
	flowtest.MustAppend(t, l, "orders", events...) // one commit: every page written once
	path := filepath.Join(t.TempDir(), "base.db")
	_, err := snapshot.Backup(context.Background(), l, path, nil)
	require.NoError(t, err)
	return restoreBase{path: path, payload: payload}
}

func TestRestoreRefuses(t *testing.T) {
	base := makeRestoreBase(t)
	raw, err := os.ReadFile(base.path)
	require.NoError(t, err)
	require.Equal(t, 1, bytes.Count(raw, base.payload))

	tests := []struct {
		name    string
		backup  func(t *testing.T) []byte                    // the backup's bytes; nil: none at all
		dest    func(t *testing.T, dir string) (path string) // prepares and returns the destination
		wantErr []error
	}{
		{
			name:    "an existing destination",
			dest:    func(t *testing.T, dir string) string { return existingFile(t, nil, dir) },
			wantErr: []error{snapshot.ErrExists},
		},
		{
			name: "a destination that is a journal in use",
			dest: func(t *testing.T, dir string) string {
				return flowtest.MustOpenLogAt(t, filepath.Join(dir, "live.db"), nil).Path()
			},
			wantErr: []error{snapshot.ErrInUse, eventlog.ErrLocked},
		},
		{
			name:    "a missing backup",
			backup:  func(t *testing.T) []byte { return nil },
			wantErr: []error{fs.ErrNotExist},
		},
		{
			name:    "an empty backup",
			backup:  func(t *testing.T) []byte { return []byte{} },
			wantErr: []error{snapshot.ErrVerify, eventlog.ErrNotJournal},
		},
		{
			name:    "a backup that is not a journal",
			backup:  func(t *testing.T) []byte { return bytes.Repeat([]byte(`{"not":"a journal"}`), 1000) },
			wantErr: []error{snapshot.ErrVerify, eventlog.ErrNotJournal},
		},
		{
			name:    "a truncated backup",
			backup:  func(t *testing.T) []byte { return bytes.Clone(raw[:len(raw)/2]) },
			wantErr: []error{snapshot.ErrVerify, eventlog.ErrTruncated},
		},
		{
			name: "a backup with a damaged meta page",
			backup: func(t *testing.T) []byte {
				b := bytes.Clone(raw)
				b[16+48] ^= 0x01 // meta page 0's transaction id: its checksum fails
				return b
			},
			wantErr: []error{snapshot.ErrVerify, eventlog.ErrCorrupt},
		},
		{
			name: "a backup with a damaged record",
			backup: func(t *testing.T) []byte {
				b := bytes.Clone(raw)
				b[bytes.Index(b, base.payload)] ^= 0x01 // its CRC no longer matches
				return b
			},
			wantErr: []error{snapshot.ErrVerify, eventlog.ErrCorrupt},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			backup := filepath.Join(dir, "backup.db")
			content := raw
			if tt.backup != nil {
				content = tt.backup(t)
			}
			if content != nil {
				require.NoError(t, os.WriteFile(backup, content, 0o644))
			}
			destDir := t.TempDir()
			dest := filepath.Join(destDir, "restored.db")
			if tt.dest != nil {
				dest = tt.dest(t, destDir)
			}
			destBefore, destErr := os.ReadFile(dest)

			rep, err := snapshot.Restore(context.Background(), backup, dest, nil)
			for _, want := range tt.wantErr {
				require.ErrorIs(t, err, want)
			}
			assert.Zero(t, rep)
			if destErr == nil {
				after, err := os.ReadFile(dest)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(destBefore, after), "the destination was changed")
			} else {
				assert.NoFileExists(t, dest)
			}
			assert.Empty(t, temporaries(t, destDir))
			if content != nil {
				after, err := os.ReadFile(backup)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(content, after), "the backup was changed")
			}
		})
	}
}

func TestRestoreCancelledLeavesNothing(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "orders", bigEvents(600, 4<<10)...)
	backup := filepath.Join(t.TempDir(), "backup.db")
	_, err := snapshot.Backup(context.Background(), l, backup, nil)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	dest := filepath.Join(dir, "restored.db")
	_, err = snapshot.Restore(ctx, backup, dest, &snapshot.RestoreOptions{
		Progress: func(written, total int64) { cancel() },
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.NoFileExists(t, dest)
	assert.Empty(t, temporaries(t, dir))
}

func TestLogWriteToAfterClose(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	require.NoError(t, l.Close())
	var buf bytes.Buffer
	_, err := l.WriteTo(&buf)
	require.ErrorIs(t, err, eventlog.ErrClosed)
	_, err = snapshot.Backup(context.Background(), l, filepath.Join(t.TempDir(), "backup.db"), nil)
	require.ErrorIs(t, err, eventlog.ErrClosed)
}

// BenchmarkBackup measures Backup of a journal of about 200 MB while two
// goroutines keep appending to it. MB/s counts the backup's bytes over the
// whole call (copy, Check of the copy, rename); copy-MB/s over the copy
// alone; appends/s the events acknowledged while the backup ran, and
// idle-appends/s those acknowledged over half a second with no backup.
//
//	go test ./snapshot -run '^$' -bench BenchmarkBackup -benchtime 1x
func BenchmarkBackup(b *testing.B) {
	l := flowtest.MustOpenLog(b, nil)
	const target, size = 170 << 20, 900 // four records to a chunk, a chunk to a page
	for written := 0; written < target; written += 4000 * size {
		flowtest.MustAppend(b, l, "bulk", bigEvents(4000, size)...)
	}
	w := startWriters(b, l, []string{"orders", "payments"}, 2, 8, 200)
	w.waitStarted(b)
	// The writers' rate without a backup, for comparison: a timed window,
	// as a rate needs one.
	const window = 500 * time.Millisecond
	baseBefore := w.snapshotAcked()
	<-time.After(window)
	var baseline uint64
	for s, seq := range w.snapshotAcked() {
		baseline += seq - baseBefore[s]
	}
	dir := b.TempDir()
	path := filepath.Join(dir, "backup.db")
	b.ResetTimer()
	var bytesTotal int64
	var copyTook, took time.Duration
	var appended uint64
	for b.Loop() {
		ackedBefore := w.snapshotAcked()
		start := time.Now()
		var copied time.Duration
		rep, err := snapshot.Backup(context.Background(), l, path, &snapshot.BackupOptions{
			Overwrite: true,
			Progress: func(written, total int64) {
				if written == total {
					copied = time.Since(start)
				}
			},
		})
		require.NoError(b, err)
		for s, seq := range w.snapshotAcked() {
			appended += seq - ackedBefore[s]
		}
		bytesTotal += rep.Bytes
		took += rep.Took
		copyTook += copied
	}
	b.StopTimer()
	w.stop()
	for err := range w.errs {
		b.Error(err)
	}
	mb := float64(bytesTotal) / 1e6
	b.ReportMetric(mb/took.Seconds(), "MB/s")
	b.ReportMetric(mb/copyTook.Seconds(), "copy-MB/s")
	b.ReportMetric(float64(appended)/took.Seconds(), "appends/s")
	b.ReportMetric(float64(baseline)/window.Seconds(), "idle-appends/s")
	b.ReportMetric(float64(bytesTotal)/float64(b.N)/1e6, "MB/backup")
}
