package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAttemptCtx(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		watch   bool // call Done before the outcome
		cancel  bool // cancel the parent
		wait    bool // wait for Done
		wantErr error
		expired bool
	}{
		{name: "unwatched, in time", timeout: time.Hour},
		{name: "watched, in time", timeout: time.Hour, watch: true},
		{name: "watched, deadline fires", timeout: 10 * time.Millisecond, watch: true, wait: true, wantErr: context.DeadlineExceeded, expired: true},
		{name: "unwatched, deadline passed", timeout: -time.Millisecond, wantErr: context.DeadlineExceeded, expired: true},
		{name: "watched, parent cancelled", timeout: time.Hour, watch: true, cancel: true, wait: true, wantErr: context.Canceled},
		{name: "unwatched, parent cancelled", timeout: time.Hour, cancel: true, wantErr: context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := newAttemptCtx(parent, time.Now().Add(tc.timeout))
			d, ok := c.Deadline()
			require.True(t, ok)
			require.WithinDuration(t, time.Now().Add(tc.timeout), d, time.Second)
			var done <-chan struct{}
			if tc.watch {
				done = c.Done()
			}
			if tc.cancel {
				cancel()
			}
			if tc.wait {
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("Done was not closed")
				}
			}
			require.ErrorIs(t, c.Err(), tc.wantErr)
			if tc.wantErr == nil {
				require.NoError(t, c.Err())
			}
			// A late Done of a finished context is already closed.
			if tc.wantErr != nil {
				select {
				case <-c.Done():
				default:
					t.Fatal("Done of a cancelled context is open")
				}
			}
			require.Equal(t, tc.expired, c.release(time.Now()))
			require.Error(t, c.Err(), "released context reports an error")
		})
	}
}
