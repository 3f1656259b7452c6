package eventlog_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"
)

func TestGet(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	res := flowtest.MustAppend(t, l, "s", flowtest.Events(3, "t")...)
	flowtest.MustAppend(t, l, "other", flowtest.Events(5, "t")...)

	cases := []struct {
		name   string
		stream string
		seq    uint64
		want   error
	}{
		{"first", "s", 1, nil},
		{"last", "s", 3, nil},
		{"seq zero", "s", 0, eventlog.ErrNotFound},
		{"beyond last", "s", 4, eventlog.ErrNotFound},
		{"missing stream", "nope", 1, eventlog.ErrNotFound},
		{"invalid stream name", "no pe", 1, eventlog.ErrInvalidName},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := l.Get(tc.stream, tc.seq)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.seq, e.Seq)
			require.Equal(t, res[tc.seq-1].ID, e.ID)
			require.Equal(t, "s", e.Stream)
			require.Equal(t, fmt.Sprint(tc.seq-1), string(e.Data))
		})
	}
}

func TestGetByID(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	caller := eventlog.DeriveID("caller")
	res := flowtest.MustAppend(t, l, "s", flowtest.Event("t", "generated"), eventlog.Event{ID: caller, Type: "t", Data: []byte("caller")})
	flowtest.MustAppend(t, l, "other", flowtest.Event("t", "x"))

	cases := []struct {
		name   string
		stream string
		id     ulid.ULID
		data   string // the event expected; "" for an error
		want   error
	}{
		{name: "generated", stream: "s", id: res[0].ID, data: "generated"},
		{name: "caller", stream: "s", id: caller, data: "caller"},
		{name: "unknown", stream: "s", id: ulid.Make(), want: eventlog.ErrNotFound},
		{name: "zero", stream: "s", id: ulid.ULID{}, want: eventlog.ErrNotFound},
		{name: "other stream's caller ID", stream: "other", id: caller, want: eventlog.ErrNotFound},
		{name: "other stream's generated ID", stream: "other", id: res[0].ID, want: eventlog.ErrNotFound},
		{name: "missing stream", stream: "nope", id: caller, want: eventlog.ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := l.GetByID(tc.stream, tc.id)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.id, e.ID)
			require.Equal(t, tc.data, string(e.Data))
		})
	}
}

func TestParseID(t *testing.T) {
	id := ulid.Make()
	got, err := eventlog.ParseID(id.String())
	require.NoError(t, err)
	require.Equal(t, id, got)
	for _, bad := range []string{"", "not-a-ulid", id.String()[:25], "8ZZZZZZZZZZZZZZZZZZZZZZZZZ"} {
		_, err := eventlog.ParseID(bad)
		require.ErrorIs(t, err, eventlog.ErrInvalidEvent, "%q", bad)
	}
}

func TestRead(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Events(10, "t")...)
	n, err := l.Truncate("s", 3, eventlog.Force)
	require.NoError(t, err)
	require.Equal(t, uint64(2), n)

	cases := []struct {
		name  string
		from  uint64
		limit int
		want  []uint64
	}{
		{"from zero", 0, 100, seqRange(3, 10)},
		{"from a removed seq", 1, 100, seqRange(3, 10)},
		{"from first", 3, 100, seqRange(3, 10)},
		{"limit", 4, 3, []uint64{4, 5, 6}},
		{"limit one", 10, 1, []uint64{10}},
		{"limit zero", 3, 0, nil},
		{"negative limit", 3, -1, nil},
		{"beyond last", 11, 100, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			events, err := l.Read("s", tc.from, tc.limit)
			require.NoError(t, err)
			if tc.want == nil {
				require.Empty(t, events)
				return
			}
			require.Equal(t, tc.want, seqsOf(events))
		})
	}
	_, err = l.Read("nope", 1, 10)
	require.ErrorIs(t, err, eventlog.ErrNotFound)

	// Tx.Read appends to dst.
	require.NoError(t, l.View(func(tx *eventlog.Tx) error {
		dst := []eventlog.Event{{Seq: 99}}
		dst, err := tx.Read(dst, "s", 9, 10)
		require.NoError(t, err)
		require.Equal(t, []uint64{99, 9, 10}, seqsOf(dst))
		return nil
	}))
}

func TestScan(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	// More than one of Scan's read chunks (1024 events).
	const total = 2500
	for i := 0; i < total; i += 500 {
		flowtest.MustAppend(t, l, "s", flowtest.Events(500, "t")...)
	}
	cases := []struct {
		name     string
		from, to uint64
		want     []uint64
	}{
		{"everything", 0, 0, seqRange(1, total)},
		{"from", 1000, 0, seqRange(1000, total)},
		{"to", 1, 1025, seqRange(1, 1025)},
		{"range across chunks", 1000, 2100, seqRange(1000, 2100)},
		{"single", 2048, 2048, []uint64{2048}},
		{"to beyond last", 2499, 9999, []uint64{2499, 2500}},
		{"to before from", 10, 5, nil},
		{"from beyond last", total + 1, 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint64
			for e, err := range l.Scan("s", tc.from, tc.to) {
				require.NoError(t, err)
				got = append(got, e.Seq)
			}
			require.Equal(t, tc.want, got)
		})
	}
	t.Run("stop early", func(t *testing.T) {
		var got []uint64
		for e, err := range l.Scan("s", 0, 0) {
			require.NoError(t, err)
			if got = append(got, e.Seq); len(got) == 3 {
				break
			}
		}
		require.Equal(t, []uint64{1, 2, 3}, got)
	})
	t.Run("missing stream", func(t *testing.T) {
		n := 0
		for _, err := range l.Scan("nope", 0, 0) {
			require.ErrorIs(t, err, eventlog.ErrNotFound)
			n++
		}
		require.Equal(t, 1, n, "the error is yielded once")
	})
}

func TestSeqAtTime(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	// Times come from the clock: append in several calls and read the
	// stored times back. Events of one call may share a time.
	for i := range 6 {
		flowtest.MustAppend(t, l, "s", flowtest.Events(i%3+1, "t")...)
	}
	events := readStream(t, l, "s")
	first, last := events[0], events[len(events)-1]

	// want is the reference answer: the first event at or after at.
	want := func(at time.Time) uint64 {
		for _, e := range events {
			if !e.Time.Before(at) {
				return e.Seq
			}
		}
		return last.Seq + 1
	}
	type query struct {
		name string
		at   time.Time
	}
	queries := []query{
		{"long before first", first.Time.Add(-time.Hour)},
		{"just before first", first.Time.Add(-time.Nanosecond)},
		{"zero time", time.Time{}},
		{"after last", last.Time.Add(time.Nanosecond)},
		{"long after last", last.Time.Add(time.Hour)},
	}
	distinct := 0
	for i, e := range events {
		queries = append(queries, query{fmt.Sprintf("exactly event %d", e.Seq), e.Time})
		if i > 0 && e.Time.After(events[i-1].Time) {
			distinct++
			prev := events[i-1].Time
			queries = append(queries, query{fmt.Sprintf("between events %d and %d", events[i-1].Seq, e.Seq), prev.Add(e.Time.Sub(prev) / 2)})
			queries = append(queries, query{fmt.Sprintf("just after event %d", events[i-1].Seq), prev.Add(time.Nanosecond)})
		}
	}
	require.Positive(t, distinct, "separate appends got distinct times")
	for _, q := range queries {
		t.Run(q.name, func(t *testing.T) {
			got, err := l.SeqAtTime("s", q.at)
			require.NoError(t, err)
			require.Equal(t, want(q.at), got, "at %v", q.at)
			// The same instant in another zone is the same answer.
			got, err = l.SeqAtTime("s", q.at.In(time.FixedZone("east", 5*3600)))
			require.NoError(t, err)
			require.Equal(t, want(q.at), got)
		})
	}
	require.Equal(t, uint64(1), want(first.Time))
	require.Equal(t, last.Seq+1, want(last.Time.Add(1)))

	t.Run("after truncation", func(t *testing.T) {
		_, err := l.Truncate("s", 4, eventlog.Force)
		require.NoError(t, err)
		got, err := l.SeqAtTime("s", first.Time.Add(-time.Hour))
		require.NoError(t, err)
		require.Equal(t, uint64(4), got, "the first retained seq")
	})
	t.Run("missing stream", func(t *testing.T) {
		_, err := l.SeqAtTime("nope", time.Now())
		require.ErrorIs(t, err, eventlog.ErrNotFound)
	})
}

func TestInfoAndStreams(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	streams, err := l.Streams()
	require.NoError(t, err)
	require.Empty(t, streams)

	flowtest.MustAppend(t, l, "b", flowtest.Events(4, "t")...)
	one := mustInfo(t, l, "b").Bytes / 4 // the four events have the same size
	require.Positive(t, one)
	flowtest.MustAppend(t, l, "a", flowtest.Event("t", "x"))
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		_, err := tx.Append("$sys", flowtest.Event("t", "x"), flowtest.Event("t", "y"))
		return err
	}))
	_, err = l.Truncate("b", 2, eventlog.Force)
	require.NoError(t, err)

	streams, err = l.Streams()
	require.NoError(t, err)
	require.Len(t, streams, 3)
	for _, si := range streams {
		require.Equal(t, mustInfo(t, l, si.Name), si, "Streams and Info agree on %s", si.Name)
		require.False(t, si.LastTime.IsZero())
	}
	require.Equal(t, "$sys", streams[0].Name, "name order: system streams included")
	require.Equal(t, "a", streams[1].Name)
	b := streams[2]
	require.Equal(t, "b", b.Name)
	require.Equal(t, uint64(2), b.First)
	require.Equal(t, uint64(4), b.Last)
	require.Equal(t, uint64(3), b.Count)
	require.Equal(t, 3*one, b.Bytes, "bytes of the retained events only")

	_, err = l.Info("nope")
	require.ErrorIs(t, err, eventlog.ErrNotFound)
	_, err = l.Info("")
	require.ErrorIs(t, err, eventlog.ErrInvalidName)
}

// TestEventRoundTrip shows what a read returns for each field. Data and
// Headers are returned as stored, except that an empty Headers map reads
// back as nil; nil Data stays nil and empty Data stays empty (see Event).
func TestEventRoundTrip(t *testing.T) {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	cases := []struct {
		name  string
		event eventlog.Event
		want  eventlog.Event // Type, Key, Headers, Data as read back
	}{
		{"nil data", eventlog.Event{Type: "t"}, eventlog.Event{Type: "t"}},
		{"empty data", eventlog.Event{Type: "t", Data: []byte{}}, eventlog.Event{Type: "t", Data: []byte{}}},
		{"json", eventlog.Event{Type: "order.created", Data: []byte(`{"id":1}`)}, eventlog.Event{Type: "order.created", Data: []byte(`{"id":1}`)}},
		{"binary", eventlog.Event{Type: "t", Data: binary}, eventlog.Event{Type: "t", Data: binary}},
		{"key", eventlog.Event{Type: "t", Key: "order-1 ✓"}, eventlog.Event{Type: "t", Key: "order-1 ✓"}},
		{"empty headers", eventlog.Event{Type: "t", Headers: map[string]string{}}, eventlog.Event{Type: "t"}},
		{"headers", eventlog.Event{Type: "t", Headers: map[string]string{"b": "2", "a": "", "trace-id": "x\x00y"}}, eventlog.Event{Type: "t", Headers: map[string]string{"b": "2", "a": "", "trace-id": "x\x00y"}}},
		{"everything", eventlog.Event{Type: "a.b", Key: "k", Headers: map[string]string{"h": "v"}, Data: []byte("d")}, eventlog.Event{Type: "a.b", Key: "k", Headers: map[string]string{"h": "v"}, Data: []byte("d")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := flowtest.MustOpenLog(t, nil)
			// Fields Append assigns are ignored when the caller sets them.
			in := tc.event
			in.Seq, in.Stream, in.Time = 42, "elsewhere", time.Unix(1, 0)
			res := flowtest.MustAppend(t, l, "s", in)
			for _, reopen := range []bool{false, true} {
				if reopen {
					l = flowtest.MustReopen(t, l, nil)
				}
				got, err := l.Get("s", res[0].Seq)
				require.NoError(t, err)
				require.Equal(t, uint64(1), got.Seq)
				require.Equal(t, "s", got.Stream)
				require.Equal(t, res[0].ID, got.ID)
				require.WithinDuration(t, time.Now(), got.Time, time.Minute)
				got.Seq, got.ID, got.Stream, got.Time = 0, ulid.ULID{}, "", time.Time{}
				require.Equal(t, tc.want, got, "reopened: %v", reopen)
				require.Equal(t, tc.want.Data == nil, got.Data == nil, "nil Data stays nil, empty stays empty")
			}
		})
	}

	t.Run("caller buffers are not aliased", func(t *testing.T) {
		l := flowtest.MustOpenLog(t, nil)
		data := []byte("original")
		headers := map[string]string{"h": "v"}
		flowtest.MustAppend(t, l, "s", eventlog.Event{Type: "t", Data: data, Headers: headers})
		copy(data, "CHANGED!")
		headers["h"] = "changed"
		got, err := l.Get("s", 1)
		require.NoError(t, err)
		require.Equal(t, "original", string(got.Data))
		require.Equal(t, map[string]string{"h": "v"}, got.Headers)

		// Nor are the journal's: changing a read event changes nothing.
		got.Data[0] = 'X'
		again, err := l.Get("s", 1)
		require.NoError(t, err)
		require.Equal(t, "original", string(again.Data))
	})
}
