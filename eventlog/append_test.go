package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

func TestAppendAssignsDenseSeqsFromOne(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	want := uint64(1)
	for _, n := range []int{1, 3, 1, 5} {
		for _, r := range flowtest.MustAppend(t, l, "s", flowtest.Events(n, "t.x")...) {
			require.Equal(t, want, r.Seq)
			require.False(t, r.Duplicate)
			want++
		}
	}
	si := mustInfo(t, l, "s")
	require.Equal(t, eventlog.StreamInfo{Name: "s", First: 1, Last: 10, Count: 10, Bytes: si.Bytes, LastTime: si.LastTime}, si)
	require.Equal(t, seqRange(1, 10), seqsOf(readStream(t, l, "s")))
}

func TestAppendStreamsHaveIndependentSeqs(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	counts := map[string]int{"b": 3, "a": 5, "c.d-e_f": 1}
	// Interleave the streams so that their seqs would collide if shared.
	for round := range 5 {
		for _, s := range []string{"a", "b", "c.d-e_f"} {
			if round < counts[s] {
				res := flowtest.MustAppend(t, l, s, flowtest.Event("t", s))
				require.Equal(t, uint64(round+1), res[0].Seq, "stream %s", s)
			}
		}
	}
	streams, err := l.Streams()
	require.NoError(t, err)
	var names []string
	for _, si := range streams {
		names = append(names, si.Name)
		require.Equal(t, uint64(counts[si.Name]), si.Count, si.Name)
		require.Equal(t, uint64(counts[si.Name]), si.Last, si.Name)
		for _, e := range readStream(t, l, si.Name) {
			require.Equal(t, si.Name, string(e.Data), "event %d of %s", e.Seq, si.Name)
			require.Equal(t, si.Name, e.Stream)
		}
	}
	require.Equal(t, []string{"a", "b", "c.d-e_f"}, names, "Streams is in name order")
}

func TestAppendMultiEventCallIsOneUnit(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Event("t", "before"))
	events := []eventlog.Event{flowtest.Event("t", "x"), flowtest.Event("t", "y"), flowtest.Event("t", "z")}
	res := flowtest.MustAppend(t, l, "s", events...)
	require.Equal(t, []uint64{2, 3, 4}, []uint64{res[0].Seq, res[1].Seq, res[2].Seq}, "contiguous, in call order")

	got := readStream(t, l, "s")[1:]
	for i, e := range got {
		require.Equal(t, string(events[i].Data), string(e.Data))
		require.Equal(t, res[i].ID, e.ID)
	}

	// A call with one bad event writes none of them.
	events[2].Type = ""
	_, err := l.Append("s", events...)
	require.ErrorIs(t, err, eventlog.ErrInvalidEvent)
	require.Equal(t, uint64(4), mustInfo(t, l, "s").Count)
}

func TestAppendGeneratesIDs(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	seen := map[ulid.ULID]string{}
	for _, s := range []string{"a", "b"} {
		for range 3 {
			res := flowtest.MustAppend(t, l, s, flowtest.Events(4, "t")...)
			for _, r := range res {
				require.NotZero(t, r.ID)
				where := fmt.Sprintf("%s/%d", s, r.Seq)
				require.NotContains(t, seen, r.ID, "%s reuses the ID of %s", where, seen[r.ID])
				seen[r.ID] = where

				e, err := l.GetByID(s, r.ID)
				require.NoError(t, err)
				require.Equal(t, r.Seq, e.Seq)
				require.Equal(t, r.ID, e.ID)
				require.Equal(t, ulid.Timestamp(e.Time), r.ID.Time(), "the ULID's time is the append time")
			}
		}
	}
	// A generated ID belongs to its stream: the same seq in another stream
	// is a different event.
	ra, err := l.Get("a", 1)
	require.NoError(t, err)
	_, err = l.GetByID("b", ra.ID)
	require.ErrorIs(t, err, eventlog.ErrNotFound)
}

func TestAppendKeepsCallerIDs(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	ids := []ulid.ULID{ulid.Make(), eventlog.DeriveID("order", "7"), ulid.MustParse("01ARZ3NDEKTSV4RRFFQ69G5FAV")}
	events := make([]eventlog.Event, len(ids))
	for i, id := range ids {
		events[i] = eventlog.Event{ID: id, Type: "t", Data: []byte{byte(i)}}
	}
	res := flowtest.MustAppend(t, l, "s", events...)
	for i, id := range ids {
		require.Equal(t, id, res[i].ID)
		e, err := l.GetByID("s", id)
		require.NoError(t, err)
		require.Equal(t, res[i].Seq, e.Seq)
		require.Equal(t, id, e.ID)
		require.Equal(t, []byte{byte(i)}, e.Data)
	}
}

func TestAppendTimeIsUTCAndNeverDecreases(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	start := time.Now()
	for range 10 {
		flowtest.MustAppend(t, l, "s", flowtest.Events(3, "t")...)
	}
	end := time.Now()
	events := readStream(t, l, "s")
	require.Len(t, events, 30)
	for i, e := range events {
		require.Equal(t, time.UTC, e.Time.Location(), "event %d", e.Seq)
		require.False(t, e.Time.Before(start.Truncate(time.Microsecond)) || e.Time.After(end), "event %d at %v, appended within [%v, %v]", e.Seq, e.Time, start, end)
		if i > 0 {
			require.False(t, e.Time.Before(events[i-1].Time), "event %d at %v is before event %d at %v", e.Seq, e.Time, events[i-1].Seq, events[i-1].Time)
		}
	}
	si := mustInfo(t, l, "s")
	require.Equal(t, events[len(events)-1].Time, si.LastTime)
	require.Equal(t, time.UTC, si.LastTime.Location())
}

func TestAppendValidation(t *testing.T) {
	valid := eventlog.Event{Type: "ok"}
	cases := []struct {
		name    string
		event   eventlog.Event
		maxSize int // Options.MaxEventBytes; 0 for the default
		field   string
		want    error
	}{
		{name: "empty type", event: eventlog.Event{}, field: "type", want: eventlog.ErrInvalidEvent},
		{name: "type with space", event: eventlog.Event{Type: "order created"}, field: "type", want: eventlog.ErrInvalidEvent},
		{name: "type with slash", event: eventlog.Event{Type: "order/created"}, field: "type", want: eventlog.ErrInvalidEvent},
		{name: "type with non-ASCII", event: eventlog.Event{Type: "café.opened"}, field: "type", want: eventlog.ErrInvalidEvent},
		{name: "type with empty segment", event: eventlog.Event{Type: "order..created"}, field: "type", want: eventlog.ErrInvalidEvent},
		{name: "type with leading dot", event: eventlog.Event{Type: ".order"}, field: "type", want: eventlog.ErrInvalidEvent},
		{name: "type with trailing dot", event: eventlog.Event{Type: "order."}, field: "type", want: eventlog.ErrInvalidEvent},
		{name: "type too long", event: eventlog.Event{Type: strings.Repeat("t", eventlog.MaxTypeLen+1)}, field: "type", want: eventlog.ErrInvalidEvent},
		{name: "key too long", event: eventlog.Event{Type: "t", Key: strings.Repeat("k", eventlog.MaxKeyLen+1)}, field: "key", want: eventlog.ErrInvalidEvent},
		{name: "key not UTF-8", event: eventlog.Event{Type: "t", Key: "k\xff"}, field: "key", want: eventlog.ErrInvalidEvent},
		{name: "empty header name", event: eventlog.Event{Type: "t", Headers: map[string]string{"a": "1", "": "2"}}, field: "headers", want: eventlog.ErrInvalidEvent},
		{name: "event over MaxEventBytes", event: eventlog.Event{Type: "t", Data: make([]byte, 600)}, maxSize: 512, field: "size", want: eventlog.ErrEventTooLarge},
		{name: "event over default MaxEventBytes", event: eventlog.Event{Type: "t", Data: make([]byte, 1<<20)}, field: "size", want: eventlog.ErrEventTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := flowtest.MustOpenLog(t, &eventlog.Options{MaxEventBytes: tc.maxSize})
			flowtest.MustAppend(t, l, "s", valid)
			before := mustInfo(t, l, "s")

			for index := range 3 {
				events := []eventlog.Event{valid, valid, valid}
				events[index] = tc.event
				res, err := l.Append("s", events...)
				require.ErrorIs(t, err, tc.want)
				require.Nil(t, res)
				var ee *eventlog.EventError
				require.ErrorAs(t, err, &ee)
				require.Equal(t, index, ee.Index)
				require.Equal(t, tc.field, ee.Field)

				// The same event refused on a new stream does not create it.
				_, err = l.Append("fresh", events...)
				require.ErrorIs(t, err, tc.want)
			}
			require.Equal(t, before, mustInfo(t, l, "s"), "nothing was written")
			_, err := l.Info("fresh")
			require.ErrorIs(t, err, eventlog.ErrNotFound)
		})
	}
}

func TestAppendValidationLimitsAreInclusive(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s",
		eventlog.Event{Type: strings.Repeat("t", eventlog.MaxTypeLen)},
		eventlog.Event{Type: "a.b-c_D.9", Key: strings.Repeat("é", eventlog.MaxKeyLen/2)},
		eventlog.Event{Type: "t", Headers: map[string]string{"h": ""}},
	)
}

func TestAppendMaxEventBytesCountsTheEnvelope(t *testing.T) {
	// Measure the encoded size of one event through Info.Bytes...
	ev := eventlog.Event{Type: "t", Key: "k", Headers: map[string]string{"h": "v"}, Data: make([]byte, 300)}
	measure := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, measure, "s", ev)
	size := int(mustInfo(t, measure, "s").Bytes)
	require.Greater(t, size, 300, "the envelope counts")

	// ...then a limit of exactly that size admits it and one byte less does not.
	fits := flowtest.MustOpenLog(t, &eventlog.Options{MaxEventBytes: size})
	flowtest.MustAppend(t, fits, "s", ev)
	tight := flowtest.MustOpenLog(t, &eventlog.Options{MaxEventBytes: size - 1})
	_, err := tight.Append("s", ev)
	require.ErrorIs(t, err, eventlog.ErrEventTooLarge)
}

func TestAppendStreamNames(t *testing.T) {
	cases := []struct {
		stream string
		want   error // nil: accepted
	}{
		{"events", nil},
		{"a", nil},
		{"A-z_0.9", nil},
		{strings.Repeat("s", eventlog.MaxNameLen), nil},
		{"", eventlog.ErrInvalidName},
		{strings.Repeat("s", eventlog.MaxNameLen+1), eventlog.ErrInvalidName},
		{"with space", eventlog.ErrInvalidName},
		{"a/b", eventlog.ErrInvalidName},
		{"nul\x00", eventlog.ErrInvalidName},
		{"ünicode", eventlog.ErrInvalidName},
		{"$", eventlog.ErrInvalidName},
		{"a$", eventlog.ErrInvalidName},
		{"$system", eventlog.ErrReservedStream},
		{"$x.y", eventlog.ErrReservedStream},
	}
	l := flowtest.MustOpenLog(t, nil)
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%q", tc.stream), func(t *testing.T) {
			res, err := l.Append(tc.stream, flowtest.Event("t", "x"))
			if tc.want == nil {
				require.NoError(t, err)
				require.Equal(t, uint64(1), res[0].Seq)
				return
			}
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, res)
		})
	}
	streams, err := l.Streams()
	require.NoError(t, err)
	require.Len(t, streams, 4, "only the valid names became streams")
}

func TestAppendReservedStreamThroughTx(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	_, err := l.Append("$system", flowtest.Event("supervisor.started", ""))
	require.ErrorIs(t, err, eventlog.ErrReservedStream)

	var res []eventlog.AppendResult
	require.NoError(t, l.Update(func(tx *eventlog.Tx) (err error) {
		res, err = tx.Append("$system", flowtest.Event("supervisor.started", "1"), flowtest.Event("supervisor.stopped", "2"))
		return err
	}))
	require.Equal(t, uint64(1), res[0].Seq)
	require.Equal(t, uint64(2), res[1].Seq)

	e, err := l.Get("$system", 2)
	require.NoError(t, err)
	require.Equal(t, "supervisor.stopped", e.Type)
	require.Equal(t, "$system", e.Stream)

	// Tx.Append validates events like Log.Append does.
	err = l.Update(func(tx *eventlog.Tx) error {
		_, err := tx.Append("$system", eventlog.Event{Type: "bad..type"})
		return err
	})
	require.ErrorIs(t, err, eventlog.ErrInvalidEvent)
	require.Equal(t, uint64(2), mustInfo(t, l, "$system").Count)
}

func TestAppendNothing(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	res, err := l.Append("s")
	require.NoError(t, err)
	require.Empty(t, res)
	_, err = l.Info("s")
	require.ErrorIs(t, err, eventlog.ErrNotFound, "an empty append does not create the stream")

	flowtest.MustAppend(t, l, "s", flowtest.Event("t", ""))
	res, err = l.Append("s", []eventlog.Event{}...)
	require.NoError(t, err)
	require.Empty(t, res)
	require.Equal(t, uint64(1), mustInfo(t, l, "s").Last)

	// The stream name is still checked.
	_, err = l.Append("bad name")
	require.ErrorIs(t, err, eventlog.ErrInvalidName)
}

func TestAppendConcurrentGroupCommit(t *testing.T) {
	const writers, perWriter = 64, 50
	l := flowtest.MustOpenLog(t, nil)
	type result struct {
		data string
		res  eventlog.AppendResult
	}
	results := make([][]result, writers)
	errs := make(chan error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range perWriter {
				data := fmt.Sprintf("%d/%d", w, i)
				res, err := l.Append("s", eventlog.Event{Type: "t", Key: fmt.Sprint(w), Data: []byte(data)})
				if err != nil {
					errs <- fmt.Errorf("writer %d append %d: %w", w, i, err)
					return
				}
				results[w] = append(results[w], result{data, res[0]})
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	const total = writers * perWriter
	si := mustInfo(t, l, "s")
	require.Equal(t, uint64(total), si.Count)
	require.Equal(t, uint64(total), si.Last)
	events := readStream(t, l, "s")
	require.Equal(t, seqRange(1, total), seqsOf(events), "seqs are dense")

	seen := make(map[uint64]bool, total)
	for w, rs := range results {
		require.Len(t, rs, perWriter, "writer %d", w)
		var prev uint64
		for _, r := range rs {
			require.False(t, seen[r.res.Seq], "seq %d given twice", r.res.Seq)
			seen[r.res.Seq] = true
			require.Greater(t, r.res.Seq, prev, "one writer's appends are ordered")
			prev = r.res.Seq
			e := events[r.res.Seq-1]
			require.Equal(t, r.data, string(e.Data), "seq %d", r.res.Seq)
			require.Equal(t, r.res.ID, e.ID, "seq %d", r.res.Seq)
		}
	}
}

var errBoom = errors.New("boom")

func TestValidateEvents(t *testing.T) {
	big := eventlog.Event{Type: "t", Data: make([]byte, 2000)}
	cases := []struct {
		name   string
		events []eventlog.Event
		max    int
		index  int
		want   error // nil: valid
	}{
		{name: "none", events: nil},
		{name: "valid", events: []eventlog.Event{{Type: "a"}, {Type: "b.c", Key: "k"}}},
		{name: "invalid second", events: []eventlog.Event{{Type: "a"}, {Type: "b..c"}}, index: 1, want: eventlog.ErrInvalidEvent},
		{name: "too large", events: []eventlog.Event{{Type: "a"}, {Type: "a"}, big}, max: 1000, index: 2, want: eventlog.ErrEventTooLarge},
		{name: "zero max means the default", events: []eventlog.Event{big}, max: 0},
		{name: "negative max means the default", events: []eventlog.Event{big}, max: -1},
		{name: "over the default", events: []eventlog.Event{{Type: "t", Data: make([]byte, 1<<20)}}, want: eventlog.ErrEventTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := eventlog.ValidateEvents(tc.events, tc.max)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
			var ee *eventlog.EventError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, tc.index, ee.Index)
		})
	}
}

// Appends reuse their encoding buffers once committed: concurrent batches
// of every size, group-committed together, must each read back intact.
func TestAppendConcurrentBatchesReadBackIntact(t *testing.T) {
	const writers, perWriter = 8, 30
	l := flowtest.MustOpenLog(t, nil)
	seed := time.Now().UnixNano()
	t.Logf("seed: %d", seed)
	want := make(map[uint64]string)
	var mu sync.Mutex
	g, _ := errgroup.WithContext(context.Background())
	for w := range writers {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
		g.Go(func() error {
			for i := range perWriter {
				n := 1 + rng.IntN(200)
				events := make([]eventlog.Event, n)
				for j := range events {
					data := strings.Repeat(fmt.Sprintf("%d/%d/%d;", w, i, j), 1+rng.IntN(40))
					events[j] = eventlog.Event{Type: "t", Data: []byte(data)}
				}
				res, err := l.Append("s", events...)
				if err != nil {
					return fmt.Errorf("writer %d append %d: %w", w, i, err)
				}
				mu.Lock()
				for j, r := range res {
					want[r.Seq] = string(events[j].Data)
				}
				mu.Unlock()
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	events := readStream(t, l, "s")
	require.Len(t, events, len(want))
	for _, e := range events {
		require.Equal(t, want[e.Seq], string(e.Data), "seq %d", e.Seq)
	}
}
