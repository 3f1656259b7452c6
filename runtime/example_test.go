package runtime_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/runtime"
)

// A flow in Go: take order events, keep the big ones, reshape them, and
// deliver them to a sink. Run the runtime until it has caught up.
func Example() {
	dir, _ := os.MkdirTemp("", "flowrt-example")
	defer os.RemoveAll(dir)
	l, err := eventlog.Open(filepath.Join(dir, "flowrt.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	for _, data := range []string{`{"id":"A1","total":250}`, `{"id":"A2","total":20}`} {
		if _, err := l.Append(eventlog.DefaultStream, eventlog.Event{Type: "order.created", Data: []byte(data)}); err != nil {
			log.Fatal(err)
		}
	}

	rt, err := runtime.New(l, nil)
	if err != nil {
		log.Fatal(err)
	}
	err = rt.Add(runtime.Flow{
		Name: "big-orders",
		On:   runtime.On("order.*"),
		Steps: []runtime.Step{
			runtime.Filter(`data.total > 100`),
			runtime.Map(`{"order": data.id, "with_vat": data.total * 1.2}`),
		},
		Sinks: []runtime.Sink{runtime.SinkFunc(func(_ context.Context, d runtime.Delivery) error {
			fmt.Printf("seq %d: %v\n", d.Event.Seq, d.Payload)
			return nil // nil acks; an error retries; consumer.Permanent dead-letters
		})},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := rt.RunUntilIdle(context.Background()); err != nil {
		log.Fatal(err)
	}
	st := rt.Stats()[0]
	fmt.Printf("matched %d, filtered out %d, processed %d\n", st.Matched, st.Filtered, st.Processed)
	// Output:
	// seq 1: map[order:A1 with_vat:300]
	// matched 2, filtered out 1, processed 1
}

// A plain handler function is a flow too.
func ExampleRuntime_Handle() {
	dir, _ := os.MkdirTemp("", "flowrt-example")
	defer os.RemoveAll(dir)
	l, err := eventlog.Open(filepath.Join(dir, "flowrt.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(eventlog.DefaultStream, eventlog.Event{Type: "user.signed_up", Key: "u-1"}); err != nil {
		log.Fatal(err)
	}

	rt, _ := runtime.New(l, nil)
	err = rt.Handle("welcome", runtime.On("user.signed_up"), func(_ context.Context, e eventlog.Event) error {
		fmt.Println("welcome", e.Key)
		return nil
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := rt.RunUntilIdle(context.Background()); err != nil {
		log.Fatal(err)
	}
	// Output:
	// welcome u-1
}
