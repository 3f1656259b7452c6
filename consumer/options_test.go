package consumer_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/stretchr/testify/require"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts *consumer.Options
		want []string // every problem reported
	}{
		{name: "nil", opts: nil},
		{name: "zero", opts: &consumer.Options{}},
		{name: "valid", opts: &consumer.Options{Workers: 4, MaxInFlight: 4, HandlerTimeout: time.Second, Retry: consumer.Retry{MaxAttempts: 1, Base: time.Second, Max: time.Second, Multiplier: 1, Jitter: 1}, KeyFailure: consumer.SkipAhead}},
		{
			name: "everything wrong",
			opts: &consumer.Options{
				Workers: -1, MaxInFlight: -1, HandlerTimeout: -1,
				Retry:      consumer.Retry{MaxAttempts: -1, Base: -1, Max: -2, Multiplier: 0.5, Jitter: 1.5},
				KeyFailure: 7, CommitInterval: -1, CommitEvery: -1,
			},
			want: []string{"Workers", "MaxInFlight", "HandlerTimeout", "Retry.MaxAttempts", "Retry.Base", "Retry.Max", "Retry.Multiplier", "Retry.Jitter", "KeyFailure", "CommitInterval", "CommitEvery"},
		},
		{name: "more workers than window", opts: &consumer.Options{Workers: 5, MaxInFlight: 4}, want: []string{"Workers (5) must not exceed MaxInFlight (4)"}},
		{name: "base above max", opts: &consumer.Options{Retry: consumer.Retry{Base: time.Minute, Max: time.Second}}, want: []string{"Retry.Base"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if len(tc.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, consumer.ErrInvalidOptions)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	l := openLog(t)
	for _, tc := range []struct {
		name, stream, consumer string
		opts                   *consumer.Options
		wantErr                error
	}{
		{name: "invalid options", stream: stream, consumer: "c", opts: &consumer.Options{Workers: -1}, wantErr: consumer.ErrInvalidOptions},
		{name: "invalid stream", stream: "a b", consumer: "c", wantErr: eventlog.ErrInvalidName},
		{name: "invalid consumer", stream: stream, consumer: "", wantErr: eventlog.ErrInvalidName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := consumer.Open(l, tc.stream, tc.consumer, tc.opts)
			require.ErrorIs(t, err, tc.wantErr)
		})
	}
	// Nothing was claimed or registered by the refusals.
	cs, err := l.Consumers("")
	require.NoError(t, err)
	require.Empty(t, cs)
	r := openReader(t, l, "c", nil)
	require.NoError(t, r.Close())
}

func TestBackoff(t *testing.T) {
	p := consumer.Retry{Base: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.2}
	for _, tc := range []struct {
		name    string
		attempt int
		r       float64
		want    time.Duration
	}{
		{name: "first, no jitter", attempt: 1, r: 0.5, want: 100 * time.Millisecond},
		{name: "third, no jitter", attempt: 3, r: 0.5, want: 400 * time.Millisecond},
		{name: "capped", attempt: 10, r: 0.5, want: time.Second},
		{name: "lowest jitter", attempt: 1, r: 0, want: 80 * time.Millisecond},
		{name: "highest jitter", attempt: 2, r: 1, want: 240 * time.Millisecond},
		{name: "capped, then jittered", attempt: 50, r: 0, want: 800 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, p.Backoff(tc.attempt, tc.r))
		})
	}
}

func TestKeyFailureString(t *testing.T) {
	require.Equal(t, "hold-key", consumer.HoldKey.String())
	require.Equal(t, "skip-ahead", consumer.SkipAhead.String())
}

func TestPermanent(t *testing.T) {
	require.NoError(t, consumer.Permanent(nil))
	err := consumer.Permanent(errTransient)
	require.True(t, consumer.IsPermanent(err))
	require.ErrorIs(t, err, errTransient)
	require.Equal(t, errTransient.Error(), err.Error())
	require.True(t, consumer.IsPermanent(fmt.Errorf("handling: %w", err)), "found through wrapping")
	require.False(t, consumer.IsPermanent(errTransient))
}
