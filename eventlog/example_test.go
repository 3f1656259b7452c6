package eventlog_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/flowrt/flowrt/eventlog"
)

// exampleLog opens a journal in a new temporary directory and returns a
// function that closes it and removes the directory.
func exampleLog() (*eventlog.Log, func()) {
	dir, err := os.MkdirTemp("", "flowrt-example-")
	if err != nil {
		log.Fatal(err)
	}
	l, err := eventlog.Open(filepath.Join(dir, "journal.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	return l, func() {
		if err := l.Close(); err != nil {
			log.Fatal(err)
		}
		os.RemoveAll(dir)
	}
}

// Open a journal, append two events in one atomic call and read one back.
func Example() {
	dir, err := os.MkdirTemp("", "flowrt-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := eventlog.Open(filepath.Join(dir, "journal.db"), nil) // nil: the defaults
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	res, err := l.Append("orders",
		eventlog.Event{Type: "order.created", Key: "order-1", Data: []byte(`{"total":42}`)},
		eventlog.Event{Type: "order.paid", Key: "order-1"},
	)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range res {
		fmt.Println("appended seq", r.Seq)
	}

	e, err := l.Get("orders", res[0].Seq)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Stream, e.Seq, e.Type, e.Key, string(e.Data))
	// Output:
	// appended seq 1
	// appended seq 2
	// orders 1 order.created order-1 {"total":42}
}

// A subscription yields the events already in the stream, then waits for
// new ones.
func ExampleLog_Subscribe() {
	l, done := exampleLog()
	defer done()
	if _, err := l.Append("orders", eventlog.Event{Type: "order.created"}); err != nil {
		log.Fatal(err)
	}

	sub, err := l.Subscribe("orders", eventlog.Earliest())
	if err != nil {
		log.Fatal(err)
	}
	appended := make(chan error, 1)
	go func() {
		_, err := l.Append("orders", eventlog.Event{Type: "order.paid"})
		appended <- err
	}()
	ctx := context.Background() // a real consumer would cancel it to stop
	for range 2 {
		e, err := sub.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.Seq, e.Type)
	}
	if err := <-appended; err != nil {
		log.Fatal(err)
	}
	// Output:
	// 1 order.created
	// 2 order.paid
}

// Update commits an event and a consumer offset together: a flow that
// derives "invoice.issued" from "order.paid" acknowledges the order event
// in the same transaction, so neither can happen without the other.
func ExampleLog_Update() {
	l, done := exampleLog()
	defer done()
	in, err := l.Append("orders", eventlog.Event{Type: "order.paid", Key: "order-1"})
	if err != nil {
		log.Fatal(err)
	}

	err = l.Update(func(tx *eventlog.Tx) error {
		if _, err := tx.Append("invoices", eventlog.Event{Type: "invoice.issued", Key: "order-1"}); err != nil {
			return err // rolls back the whole closure
		}
		return tx.SetOffset("orders", "invoicing", in[0].Seq)
	})
	if err != nil {
		log.Fatal(err)
	}

	cs, err := l.Consumers("orders")
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range cs {
		fmt.Printf("%s on %s: offset %d, lag %d\n", c.Name, c.Stream, c.Offset, c.Lag)
	}
	si, err := l.Info("invoices")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("invoices:", si.Count)
	// Output:
	// invoicing on orders: offset 1, lag 0
	// invoices: 1
}

// DeriveID turns a producer's own identifier into an event ID, so a retried
// append is recognised as a duplicate.
func ExampleDeriveID() {
	l, done := exampleLog()
	defer done()

	id := eventlog.DeriveID("webhook", "order-1001")
	fmt.Println(id) // the same parts always give the same ID
	for attempt := range 2 {
		res, err := l.Append("orders", eventlog.Event{ID: id, Type: "order.created"})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("attempt %d: seq %d, duplicate %v\n", attempt+1, res[0].Seq, res[0].Duplicate)
	}
	fmt.Println(eventlog.DeriveID("a", "bc") == eventlog.DeriveID("ab", "c"))
	// Output:
	// 541JCVDR9G9TYDD8BQE7N9VN4F
	// attempt 1: seq 1, duplicate false
	// attempt 2: seq 1, duplicate true
	// false
}
