package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
)

func ExampleReader_Run() {
	dir, err := os.MkdirTemp("", "flowrt-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := eventlog.Open(filepath.Join(dir, "flowrt.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	for _, order := range []string{"order-1", "order-2", "order-3"} {
		if _, err := l.Append("orders", eventlog.Event{Type: "order.created", Key: order}); err != nil {
			log.Fatal(err)
		}
	}

	r, err := consumer.Open(l, "orders", "billing", nil)
	if err != nil {
		log.Fatal(err)
	}
	seen := make(chan struct{})
	ran := make(chan error, 1)
	go func() {
		ran <- r.Run(context.Background(), func(ctx context.Context, e eventlog.Event) error {
			fmt.Println(e.Seq, e.Type, e.Key)
			if e.Seq == 3 {
				close(seen)
			}
			return nil // acks the event
		})
	}()
	<-seen
	if err := r.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("run ended:", errors.Is(<-ran, consumer.ErrClosed))
	offset, _, err := l.Offset("orders", "billing")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("committed offset:", offset)
	// Output:
	// 1 order.created order-1
	// 2 order.created order-2
	// 3 order.created order-3
	// run ended: true
	// committed offset: 3
}
