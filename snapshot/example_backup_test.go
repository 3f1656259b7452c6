package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/snapshot"
)

// Back up a journal that stays open for writing, then restore the backup
// as a new journal.
func ExampleBackup() {
	dir, err := os.MkdirTemp("", "flowrt-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := eventlog.Open(filepath.Join(dir, "journal.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append("orders",
		eventlog.Event{Type: "order.created", Key: "order-1"},
		eventlog.Event{Type: "order.paid", Key: "order-1"},
	); err != nil {
		log.Fatal(err)
	}

	// Appends may keep going while Backup copies the journal.
	ctx := context.Background()
	rep, err := snapshot.Backup(ctx, l, filepath.Join(dir, "journal.backup"), nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range rep.Streams {
		fmt.Printf("backed up %s: events %d..%d\n", s.Name, s.First, s.Last)
	}

	// Restore writes a new file: it never replaces one.
	restored := filepath.Join(dir, "restored.db")
	if _, err := snapshot.Restore(ctx, rep.Path, restored, nil); err != nil {
		log.Fatal(err)
	}
	r, err := eventlog.Open(restored, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	e, err := r.Get("orders", 2)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("restored:", e.Seq, e.Type, e.Key)

	// The restored journal is open, so a second Restore there says it is in
	// use; were it closed, it would say the file exists.
	_, err = snapshot.Restore(ctx, rep.Path, restored, nil)
	fmt.Println("restore over a journal in use:", errors.Is(err, snapshot.ErrInUse))
	// Output:
	// backed up orders: events 1..2
	// restored: 2 order.paid order-1
	// restore over a journal in use: true
}
