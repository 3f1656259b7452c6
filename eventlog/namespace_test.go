package eventlog_test

import (
	"testing"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/stretchr/testify/require"
)

// bucketItems collects a bucket's items with the given prefix, copying them.
func bucketItems(b *eventlog.Bucket, prefix string) map[string]string {
	out := map[string]string{}
	for k, v := range b.Items([]byte(prefix)) {
		if v == nil {
			out[string(k)] = "<bucket>"
			continue
		}
		out[string(k)] = string(v)
	}
	return out
}

func TestNamespace(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		ns, err := tx.Namespace("consumer")
		require.NoError(t, err)
		require.NoError(t, ns.Put([]byte("a/1"), []byte("x")))
		require.NoError(t, ns.Put([]byte("a/2"), []byte("y")))
		require.NoError(t, ns.Put([]byte("b"), []byte("z")))
		require.NoError(t, ns.Put([]byte("gone"), []byte("soon")))
		require.NoError(t, ns.Put([]byte("empty"), []byte{}))
		require.NoError(t, ns.Delete([]byte("gone")))
		require.NoError(t, ns.Delete([]byte("never-there")), "deleting a missing key is not an error")

		nested, err := ns.Bucket([]byte("nested"))
		require.NoError(t, err)
		require.NoError(t, nested.Put([]byte("k"), []byte("deep")))
		doomed, err := ns.Bucket([]byte("doomed"))
		require.NoError(t, err)
		require.NoError(t, doomed.Put([]byte("k"), []byte("v")))
		require.NoError(t, ns.DeleteBucket([]byte("doomed")))
		require.NoError(t, ns.DeleteBucket([]byte("never-there")))

		for want := uint64(1); want <= 3; want++ {
			got, err := ns.NextSequence()
			require.NoError(t, err)
			require.Equal(t, want, got)
		}
		// Namespaces are separate.
		other, err := tx.Namespace("snapshot")
		require.NoError(t, err)
		require.Nil(t, other.Get([]byte("b")))
		seq, err := other.NextSequence()
		require.NoError(t, err)
		require.Equal(t, uint64(1), seq)
		return nil
	}))

	check := func(t *testing.T, l *eventlog.Log) {
		require.NoError(t, l.View(func(tx *eventlog.Tx) error {
			ns, err := tx.Namespace("consumer")
			require.NoError(t, err)
			require.Equal(t, []byte("x"), ns.Get([]byte("a/1")))
			require.Nil(t, ns.Get([]byte("gone")))
			require.Nil(t, ns.Get([]byte("missing")))
			require.Equal(t, map[string]string{"a/1": "x", "a/2": "y"}, bucketItems(ns, "a/"))
			require.Equal(t, map[string]string{"a/1": "x", "a/2": "y", "b": "z", "empty": "", "nested": "<bucket>"}, bucketItems(ns, ""))
			require.Empty(t, bucketItems(ns, "zzz"))

			k, v := ns.Last()
			require.Equal(t, "nested", string(k))
			require.Nil(t, v, "the last key is a nested bucket")

			nested, err := ns.Bucket([]byte("nested"))
			require.NoError(t, err)
			require.Equal(t, []byte("deep"), nested.Get([]byte("k")))
			k, v = nested.Last()
			require.Equal(t, []string{"k", "deep"}, []string{string(k), string(v)})
			_, err = ns.Bucket([]byte("doomed"))
			require.ErrorIs(t, err, eventlog.ErrNotFound, "a read-only Tx does not create buckets")

			// Values are copies: changing one changes nothing stored.
			got := ns.Get([]byte("b"))
			got[0] = 'Q'
			require.Equal(t, []byte("z"), ns.Get([]byte("b")))
			return nil
		}))
	}
	t.Run("committed", func(t *testing.T) { check(t, l) })
	l = flowtest.MustReopen(t, l, nil)
	t.Run("after reopen", func(t *testing.T) { check(t, l) })

	t.Run("sequence continues after reopen", func(t *testing.T) {
		require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
			ns, err := tx.Namespace("consumer")
			require.NoError(t, err)
			seq, err := ns.NextSequence()
			require.NoError(t, err)
			require.Equal(t, uint64(4), seq)
			return nil
		}))
	})
}

func TestNamespaceEmptyBucketLast(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		ns, err := tx.Namespace("empty")
		require.NoError(t, err)
		k, v := ns.Last()
		require.Nil(t, k)
		require.Nil(t, v)
		require.Empty(t, bucketItems(ns, ""))
		return nil
	}))
}

func TestNamespaceReadOnlyTx(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		ns, err := tx.Namespace("app")
		require.NoError(t, err)
		_, err = ns.Bucket([]byte("nested"))
		require.NoError(t, err)
		return ns.Put([]byte("k"), []byte("v"))
	}))
	require.NoError(t, l.View(func(tx *eventlog.Tx) error {
		_, err := tx.Namespace("missing")
		require.ErrorIs(t, err, eventlog.ErrNotFound)

		ns, err := tx.Namespace("app")
		require.NoError(t, err)
		writes := []struct {
			name string
			op   func() error
		}{
			{"Put", func() error { return ns.Put([]byte("k"), []byte("changed")) }},
			{"Put new key", func() error { return ns.Put([]byte("k2"), []byte("v")) }},
			{"Delete", func() error { return ns.Delete([]byte("k")) }},
			{"DeleteBucket", func() error { return ns.DeleteBucket([]byte("nested")) }},
			{"NextSequence", func() error { _, err := ns.NextSequence(); return err }},
			{"Bucket", func() error { _, err := ns.Bucket([]byte("new")); return err }},
		}
		for _, w := range writes {
			want := eventlog.ErrReadOnly
			if w.name == "Bucket" {
				want = eventlog.ErrNotFound // a missing bucket cannot be created
			}
			require.ErrorIs(t, w.op(), want, w.name)
		}
		require.Equal(t, []byte("v"), ns.Get([]byte("k")))
		return nil
	}))
}

func TestNamespaceNames(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	for _, name := range []string{"", "a b", "a/b"} {
		require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
			_, err := tx.Namespace(name)
			require.ErrorIs(t, err, eventlog.ErrInvalidName, "%q", name)
			return nil
		}))
	}
}

func TestNamespaceRolledBackWithItsUpdate(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	err := l.Update(func(tx *eventlog.Tx) error {
		ns, err := tx.Namespace("app")
		require.NoError(t, err)
		require.NoError(t, ns.Put([]byte("k"), []byte("v")))
		return errBoom
	})
	require.ErrorIs(t, err, errBoom)
	require.NoError(t, l.View(func(tx *eventlog.Tx) error {
		_, err := tx.Namespace("app")
		require.ErrorIs(t, err, eventlog.ErrNotFound, "the namespace's creation was rolled back too")
		return nil
	}))
}

func TestNamespaceItemsFrom(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	require.NoError(t, l.Update(func(tx *eventlog.Tx) error {
		ns, err := tx.Namespace("app")
		require.NoError(t, err)
		for _, k := range []string{"a", "b1", "b2", "c"} {
			require.NoError(t, ns.Put([]byte(k), []byte("v"+k)))
		}
		return nil
	}))
	require.NoError(t, l.View(func(tx *eventlog.Tx) error {
		ns, err := tx.Namespace("app")
		require.NoError(t, err)
		for _, tc := range []struct {
			start string
			want  []string
		}{
			{"", []string{"a", "b1", "b2", "c"}},
			{"b", []string{"b1", "b2", "c"}},
			{"b1", []string{"b1", "b2", "c"}},
			{"b10", []string{"b2", "c"}},
			{"d", nil},
		} {
			var got []string
			for k, v := range ns.ItemsFrom([]byte(tc.start)) {
				require.Equal(t, "v"+string(k), string(v))
				got = append(got, string(k))
			}
			require.Equal(t, tc.want, got, "from %q", tc.start)
		}
		var got []string
		for k := range ns.ItemsFrom([]byte("b")) {
			if got = append(got, string(k)); len(got) == 2 {
				break
			}
		}
		require.Equal(t, []string{"b1", "b2"}, got, "stops when told")
		return nil
	}))
}
