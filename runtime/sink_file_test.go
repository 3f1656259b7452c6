package runtime_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/runtime"
)

// sinkDelivery returns a delivery of flow "test" for a source event of
// sequence seq.
func sinkDelivery(seq uint64, payload any) runtime.Delivery {
	id := eventlog.DeriveID("sink-test", strconv.FormatUint(seq, 10))
	return runtime.Delivery{
		ID:      id.String(),
		Flow:    "test",
		Event:   eventlog.Event{Seq: seq, ID: id, Stream: eventlog.DefaultStream, Type: "order.created", Time: time.Unix(1700000000, 0).UTC()},
		Payload: payload,
	}
}

// deliveryLine is a line a file sink writes.
type deliveryLine struct {
	ID     string         `json:"id"`
	Flow   string         `json:"flow"`
	Part   string         `json:"part"`
	Source runtime.Source `json:"source"`
	Data   any            `json:"data"`
}

// readLines decodes every line of the file at path, failing the test on
// a line that is not a whole delivery.
func readLines(t *testing.T, path string) []deliveryLine {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []deliveryLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l deliveryLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), "line %d: %q", len(out)+1, sc.Text())
		out = append(out, l)
	}
	require.NoError(t, sc.Err())
	return out
}

func closeSink(t *testing.T, s runtime.Sink) {
	t.Helper()
	c, ok := s.(io.Closer)
	require.True(t, ok, "%T is not an io.Closer", s)
	require.NoError(t, c.Close())
}

func TestFileSinkAppendsOneLinePerDelivery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	// An existing file is appended to, not truncated.
	require.NoError(t, os.WriteFile(path, []byte(`{"id":"old"}`+"\n"), 0o600))
	s := runtime.FileSink(path)
	ctx := context.Background()
	require.NoError(t, s.Deliver(ctx, sinkDelivery(1, map[string]any{"total": 250})))
	require.NoError(t, s.Deliver(ctx, sinkDelivery(2, json.RawMessage(`[1,2]`))))

	lines := readLines(t, path)
	require.Len(t, lines, 3)
	assert.Equal(t, "old", lines[0].ID)
	for i, l := range lines[1:] {
		want := sinkDelivery(uint64(i+1), nil)
		assert.Equal(t, want.ID, l.ID)
		assert.Equal(t, "test", l.Flow)
		assert.Equal(t, want.Event.Seq, l.Source.Seq)
		assert.Equal(t, want.Event.ID.String(), l.Source.ID)
	}
	assert.Equal(t, map[string]any{"total": 250.0}, lines[1].Data)
	assert.Equal(t, []any{1.0, 2.0}, lines[2].Data)

	closeSink(t, s)
	closeSink(t, s) // idempotent
	err := s.Deliver(ctx, sinkDelivery(3, nil))
	require.Error(t, err, "Deliver after Close")
	assert.Len(t, readLines(t, path), 3)
}

func TestFileSinkOpensAtFirstDelivery(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "later", "out.jsonl")
	s := runtime.FileSink(path)
	_, err := os.Stat(filepath.Dir(path))
	require.ErrorIs(t, err, os.ErrNotExist, "FileSink creates nothing")

	err = s.Deliver(context.Background(), sinkDelivery(1, nil))
	require.ErrorIs(t, err, os.ErrNotExist, "the directory must exist")
	assert.False(t, consumer.IsPermanent(err), "a failed open is retried")

	// Nothing was written, so the error is not sticky.
	require.NoError(t, os.Mkdir(filepath.Dir(path), 0o755))
	require.NoError(t, s.Deliver(context.Background(), sinkDelivery(1, nil)))
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), info.Mode().Perm()&^umask(t))
	closeSink(t, s)
	assert.Len(t, readLines(t, path), 1)
}

// umask returns the bits the process umask clears, read from a file it
// creates.
func umask(t *testing.T) os.FileMode {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o777)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	info, err := os.Stat(p)
	require.NoError(t, err)
	return 0o777 &^ info.Mode().Perm()
}

func TestFileSinkCloseBeforeAnyDelivery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s := runtime.FileSink(path)
	closeSink(t, s)
	require.Error(t, s.Deliver(context.Background(), sinkDelivery(1, nil)))
	_, err := os.Stat(path)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestFileSinkConcurrentDeliveries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s := runtime.FileSink(path)
	const workers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				seq := uint64(w*each + i + 1)
				errs <- s.Deliver(context.Background(), sinkDelivery(seq, map[string]any{"worker": w, "i": i}))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	closeSink(t, s)

	lines := readLines(t, path)
	require.Len(t, lines, workers*each, "one whole line per delivery")
	seen := map[uint64]bool{}
	for _, l := range lines {
		assert.False(t, seen[l.Source.Seq], "seq %d written twice", l.Source.Seq)
		seen[l.Source.Seq] = true
	}
}

func TestFileSinkErrors(t *testing.T) {
	tests := []struct {
		name      string
		path      func(t *testing.T) string
		payload   any
		permanent bool
		contains  string
	}{
		{
			name:      "payload that JSON cannot encode is permanent",
			path:      func(t *testing.T) string { return filepath.Join(t.TempDir(), "out.jsonl") },
			payload:   math.Inf(1),
			permanent: true,
			contains:  "encode delivery",
		},
		{
			name:     "path that is a directory is retried",
			path:     func(t *testing.T) string { return t.TempDir() },
			contains: "open",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := runtime.FileSink(tt.path(t))
			defer closeSink(t, s)
			err := s.Deliver(context.Background(), sinkDelivery(1, tt.payload))
			require.ErrorContains(t, err, tt.contains)
			assert.Equal(t, tt.permanent, consumer.IsPermanent(err))
		})
	}
}

func TestFileSinkWriteErrorIsSticky(t *testing.T) {
	// Writes to /dev/full fail with ENOSPC.
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full:", err)
	}
	s := runtime.FileSink("/dev/full")
	defer closeSink(t, s)
	first := s.Deliver(context.Background(), sinkDelivery(1, nil))
	require.ErrorContains(t, first, "write")
	assert.False(t, consumer.IsPermanent(first), "a write error is retried, not dead-lettered")
	second := s.Deliver(context.Background(), sinkDelivery(2, nil))
	assert.Same(t, first, second, "after a write error the sink returns that error, without writing")
}

func TestFileSinkHonoursCancelledContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s := runtime.FileSink(path)
	defer closeSink(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, s.Deliver(ctx, sinkDelivery(1, nil)), context.Canceled)
	_, err := os.Stat(path)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing written")
}

// A flow delivering to a file: one JSON line per event, with the source
// event's seq and id, and the runtime closes the sink when it stops.
func TestFileSinkInAFlow(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	res := flowtest.MustAppend(t, l, eventlog.DefaultStream,
		event("order.created", "o1", `{"total":1}`),
		event("order.created", "o2", `{"total":2}`),
		event("user.created", "u1", `{}`),
		event("order.created", "o3", `{"total":3}`),
	)
	path := filepath.Join(t.TempDir(), "orders.jsonl")
	sink := runtime.FileSink(path)
	runIdle(t, l, nil, runtime.Flow{
		Name:     "orders",
		On:       runtime.On("order.*"),
		Sinks:    []runtime.Sink{sink},
		Consumer: &consumer.Options{Workers: 2},
	})
	require.Error(t, sink.Deliver(context.Background(), sinkDelivery(9, nil)), "the runtime closed the sink")

	lines := readLines(t, path)
	require.Len(t, lines, 3)
	bySeq := map[uint64]deliveryLine{}
	for _, line := range lines {
		bySeq[line.Source.Seq] = line
	}
	for i, total := range map[int]float64{0: 1, 1: 2, 3: 3} {
		seq := res[i].Seq
		line, ok := bySeq[seq]
		require.True(t, ok, "no line for seq %d", seq)
		id := res[i].ID.String()
		assert.Equal(t, id, line.Source.ID)
		assert.Equal(t, id, line.ID)
		assert.Equal(t, "orders", line.Flow)
		assert.Equal(t, map[string]any{"total": total}, line.Data)
	}
}

func BenchmarkFileSink(b *testing.B) {
	s := runtime.FileSink(filepath.Join(b.TempDir(), "out.jsonl"))
	defer s.(io.Closer).Close()
	var seq atomic.Uint64
	payload := json.RawMessage(`{"order":"A1","total":250}`)
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Deliver(context.Background(), sinkDelivery(seq.Add(1), payload)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestFileSinkCutsAPartialLastLine(t *testing.T) {
	tests := []struct {
		name, before, want string
	}{
		{"empty", "", ""},
		{"complete lines", "{\"a\":1}\n", "{\"a\":1}\n"},
		{"torn line after complete ones", "{\"a\":1}\n{\"b\":", "{\"a\":1}\n"},
		{"only a torn line", "{\"b\":", ""},
		{"torn line longer than a block", "{}\n" + strings.Repeat("x", 10000), "{}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.jsonl")
			require.NoError(t, os.WriteFile(path, []byte(tt.before), 0o644))
			sink := runtime.FileSink(path)
			d := runtime.Delivery{ID: "x", Flow: "f", Payload: 1}
			require.NoError(t, sink.Deliver(context.Background(), d))
			require.NoError(t, sink.(io.Closer).Close())
			line, err := d.MarshalJSON()
			require.NoError(t, err)
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, tt.want+string(line)+"\n", string(got))
		})
	}
}
