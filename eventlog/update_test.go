package eventlog_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/stretchr/testify/require"
)

// TestUpdateFailureRollsBackOnlyItsClosure runs Updates and Appends
// concurrently so that they share group commits; the failing Update must
// take nothing else down with it.
func TestUpdateFailureRollsBackOnlyItsClosure(t *testing.T) {
	const rounds, updaters, appenders = 20, 6, 4
	const failing = 2 // the updater whose closure fails
	l := flowtest.MustOpenLog(t, nil)
	var mu sync.Mutex
	var problems []string
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	for round := range rounds {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for u := range updaters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				name := fmt.Sprintf("u%d-%d", round, u)
				err := l.Update(func(tx *eventlog.Tx) error {
					if _, err := tx.Append("s", flowtest.Event("update", name)); err != nil {
						return err
					}
					ns, err := tx.Namespace("test")
					if err != nil {
						return err
					}
					if err := ns.Put([]byte(name), []byte("done")); err != nil {
						return err
					}
					if u == failing {
						return fmt.Errorf("%s: %w", name, errBoom)
					}
					return nil
				})
				switch {
				case u == failing && !strings.Contains(fmt.Sprint(err), name):
					report("%s: Update returned %v, want its own error", name, err)
				case u == failing:
				case err != nil:
					report("%s: Update failed: %v", name, err)
				}
			}()
		}
		for a := range appenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				name := fmt.Sprintf("a%d-%d", round, a)
				if _, err := l.Append("s", flowtest.Event("append", name)); err != nil {
					report("%s: Append failed: %v", name, err)
				}
			}()
		}
		close(start)
		wg.Wait()
	}
	require.Empty(t, problems)

	const perRound = updaters - 1 + appenders
	events := readStream(t, l, "s")
	require.Equal(t, seqRange(1, rounds*perRound), seqsOf(events), "dense: the failed closure took no seq")
	written := map[string]bool{}
	for _, e := range events {
		require.False(t, written[string(e.Data)], "%s appended twice", e.Data)
		written[string(e.Data)] = true
	}
	require.NoError(t, l.View(func(tx *eventlog.Tx) error {
		ns, err := tx.Namespace("test")
		require.NoError(t, err)
		for round := range rounds {
			for u := range updaters {
				name := fmt.Sprintf("u%d-%d", round, u)
				if u == failing {
					require.False(t, written[name], "%s: the failed closure's event was committed", name)
					require.Nil(t, ns.Get([]byte(name)), "%s: the failed closure's key was committed", name)
				} else {
					require.True(t, written[name], name)
					require.Equal(t, []byte("done"), ns.Get([]byte(name)), name)
				}
			}
			for a := range appenders {
				require.True(t, written[fmt.Sprintf("a%d-%d", round, a)])
			}
		}
		return nil
	}))
}

func TestUpdatePanicIsReturned(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	err := l.Update(func(tx *eventlog.Tx) error {
		if _, err := tx.Append("s", flowtest.Event("t", "lost")); err != nil {
			return err
		}
		panic("closure exploded")
	})
	require.Error(t, err)
	require.Contains(t, err.Error(), "closure exploded")
	_, err = l.Info("s")
	require.ErrorIs(t, err, eventlog.ErrNotFound, "the panicking closure's append was rolled back")

	// The journal keeps working.
	res := flowtest.MustAppend(t, l, "s", flowtest.Event("t", "kept"))
	require.Equal(t, uint64(1), res[0].Seq)
}

func TestUpdateAppendAndOffsetCommitTogether(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "in", flowtest.Events(3, "t")...)

	// A consumer of "in" emits to "out" and acknowledges in one transaction.
	var res []eventlog.AppendResult
	require.NoError(t, l.Update(func(tx *eventlog.Tx) (err error) {
		if res, err = tx.Append("out", flowtest.Event("derived", "from 2")); err != nil {
			return err
		}
		if err := tx.SetOffset("in", "flow", 2); err != nil {
			return err
		}
		// The Tx sees its own writes.
		e, err := tx.Get("out", res[0].Seq)
		require.NoError(t, err)
		require.Equal(t, "from 2", string(e.Data))
		return tx.SetOffset("out", "sink", res[0].Seq) // an offset on an event of this same Tx
	}))
	off, ok, err := l.Offset("in", "flow")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(2), off)
	off, ok, err = l.Offset("out", "sink")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, res[0].Seq, off)

	// A failure after both writes undoes both.
	err = l.Update(func(tx *eventlog.Tx) error {
		if _, err := tx.Append("out", flowtest.Event("derived", "from 3")); err != nil {
			return err
		}
		if err := tx.SetOffset("in", "flow", 3); err != nil {
			return err
		}
		return errBoom
	})
	require.ErrorIs(t, err, errBoom)
	require.Equal(t, uint64(1), mustInfo(t, l, "out").Count)
	off, _, err = l.Offset("in", "flow")
	require.NoError(t, err)
	require.Equal(t, uint64(2), off)
}

func TestUpdateReturnsTxErrors(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Events(3, "t")...)
	require.NoError(t, l.CommitOffset("s", "c", 3))
	err := l.Update(func(tx *eventlog.Tx) error {
		if _, err := tx.Append("s", flowtest.Event("t", "x")); err != nil {
			return err
		}
		return tx.SetOffset("s", "c", 1)
	})
	require.ErrorIs(t, err, eventlog.ErrOffsetBackward)
	require.Equal(t, uint64(3), mustInfo(t, l, "s").Count)
}

func TestViewIsReadOnly(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, "s", flowtest.Event("t", ""))
	require.NoError(t, l.View(func(tx *eventlog.Tx) error {
		require.False(t, tx.Writable())
		_, err := tx.Append("s", flowtest.Event("t", ""))
		require.ErrorIs(t, err, eventlog.ErrReadOnly)
		require.ErrorIs(t, tx.SetOffset("s", "c", 1), eventlog.ErrReadOnly)
		require.ErrorIs(t, tx.ResetOffset("s", "c", 1), eventlog.ErrReadOnly)
		require.ErrorIs(t, tx.DeleteOffset("s", "c"), eventlog.ErrReadOnly)
		return nil
	}))
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		require.True(t, tx.Writable())
		return nil
	}))
	require.Equal(t, uint64(1), mustInfo(t, l, "s").Count)
}
