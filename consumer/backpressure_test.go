package consumer_test

import (
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/stretchr/testify/require"
)

// TestMaxInFlight: with the floor stuck below a blocked event, the Reader
// takes in at most MaxInFlight events past the floor, then waits.
func TestMaxInFlight(t *testing.T) {
	for _, tc := range []struct {
		name        string
		maxInFlight int
		workers     int
	}{
		{name: "16, four workers", maxInFlight: 16, workers: 4},
		{name: "3, one worker each", maxInFlight: 3, workers: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 600 // more than one fetch
			l := openLog(t)
			appendN(t, l, n)
			s := newSlowHandler(1)
			r := openReader(t, l, "c", &consumer.Options{Workers: tc.workers, MaxInFlight: tc.maxInFlight})
			errc := start(r, s.handle)
			waitClosed(t, "event 1 to start", s.started)
			limit := uint64(tc.maxInFlight)
			waitFor(t, "the window to fill", func() bool { return uint64(len(s.rec.acked())) == limit-1 })
			require.Equal(t, seqRange(2, limit), s.rec.acked())
			holds(t, 50*time.Millisecond, "nothing past the window is delivered", func() bool {
				st := r.Stats()
				return st.InFlight <= int64(tc.maxInFlight) && st.Delivered == limit && st.Floor == 0
			})

			close(s.release)
			waitFloor(t, r, n)
			shutdown(t, r, errc)
			require.Len(t, s.rec.acked(), n)
			require.Equal(t, int64(0), r.Stats().InFlight)
		})
	}
}
