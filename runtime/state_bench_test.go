package runtime

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
)

// BenchmarkStatefulEvent measures what state adds to one event of a flow
// counting per key, on the worker: the attempt, the reduce step, and the
// staging of its change once acked; "none" is the same flow without
// state. Every 40,000 events the changes are committed, as the consumer
// would (W7 in tests/bench commits about that often).
func BenchmarkStatefulEvent(b *testing.B) {
	for _, reducer := range []string{"none", "count", "sum"} {
		b.Run(reducer, func(b *testing.B) {
			l := flowtest.MustOpenLog(b, nil)
			rt, err := New(l, nil)
			require.NoError(b, err)
			def := Flow{
				Name:  "w",
				On:    Trigger{Stream: "s"},
				Sinks: []Sink{SinkFunc(func(context.Context, Delivery) error { return nil })},
			}
			if reducer != "none" {
				def.Steps = []Step{Reduce(ReduceSpec{Func: reducer})}
			}
			require.NoError(b, rt.Add(def))
			f := rt.flows[0]
			const keys = 10000
			events := make([]eventlog.Event, keys)
			for i := range events {
				events[i] = eventlog.Event{Stream: "s", Type: "t", Key: "k" + strconv.Itoa(i), Data: []byte("2")}
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				e := events[(i*7919)%keys]
				e.Seq = uint64(i + 1)
				if err := f.handle(ctx, e); err != nil {
					b.Fatal(err)
				}
				if f.hook == nil {
					continue
				}
				f.hook.Outcome(e.Seq, true)
				if e.Seq%40000 == 0 {
					require.NoError(b, l.Update(func(tx *eventlog.Tx) error { return f.hook.Commit(tx, e.Seq, nil) }))
					f.hook.Committed(e.Seq, nil)
				}
			}
		})
	}
}
