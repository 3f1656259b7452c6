package eventlog_test

import (
	"sync"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/stretchr/testify/require"
)

func TestClaim(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	release, err := l.Claim("consumer-a")
	require.NoError(t, err)
	_, err = l.Claim("consumer-a")
	require.ErrorIs(t, err, eventlog.ErrClaimed)
	releaseB, err := l.Claim("consumer-b")
	require.NoError(t, err, "names are claimed independently")

	release()
	release() // idempotent
	again, err := l.Claim("consumer-a")
	require.NoError(t, err)
	release() // a stale release does not free the new holder's claim
	_, err = l.Claim("consumer-a")
	require.ErrorIs(t, err, eventlog.ErrClaimed)
	again()
	releaseB()

	require.NoError(t, l.Close())
	_, err = l.Claim("consumer-c")
	require.ErrorIs(t, err, eventlog.ErrClosed)
}

func TestClaimConcurrent(t *testing.T) {
	const contenders = 32
	l := flowtest.MustOpenLog(t, nil)
	var wg sync.WaitGroup
	won := make(chan func(), contenders)
	start := make(chan struct{})
	for range contenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if release, err := l.Claim("c"); err == nil {
				won <- release
			}
		}()
	}
	close(start)
	wg.Wait()
	close(won)
	require.Len(t, won, 1, "exactly one contender holds the claim")
	(<-won)()
}
