//go:build !noflowrt

package main

import (
	"context"
	"errors"
	"testing"

	"github.com/flowrt/flowrt/eventlog"
)

// TestStateCheck runs a counting flow over a tiny prefilled journal, checks
// that its state passes, and that the check fails with errStateMismatch
// when the expected counts are off by one event, or miss a key.
func TestStateCheck(t *testing.T) {
	ctx := context.Background()
	j, err := prefillStateJournal(ctx, t.TempDir(), 1500, 7, 1, newPayloads(1, 16, payloadSize))
	if err != nil {
		t.Fatal(err)
	}
	if len(j.perKey) != 7 || j.last != 1500 {
		t.Fatalf("prefill: %d keys, last %d; want 7, 1500", len(j.perKey), j.last)
	}
	if _, err := j.runFlow(ctx, func() {}, "w7-check", 1, true); err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Open(j.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := j.checkCounts(l, "w7-check"); err != nil {
		t.Fatalf("exact state: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(map[string]int)
	}{
		{"one event more", func(m map[string]int) { m["k3"]++ }},
		{"a key more", func(m map[string]int) { m["k-none"] = 0 }},
		{"a key less", func(m map[string]int) { delete(m, "k0") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			saved := make(map[string]int, len(j.perKey))
			for k, v := range j.perKey {
				saved[k] = v
			}
			defer func() { j.perKey = saved }()
			c.edit(j.perKey)
			if err := j.checkCounts(l, "w7-check"); !errors.Is(err, errStateMismatch) {
				t.Fatalf("checkCounts = %v, want errStateMismatch", err)
			}
		})
	}
}
