package supervisor_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/supervisor"
)

// worker is a Child that works until the supervisor cancels it.
type worker struct{}

func (worker) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

func Example() {
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

	s, err := supervisor.New(l, &supervisor.Options{Details: map[string]string{"version": "v0.1.0"}})
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Add("billing", worker{}, nil); err != nil {
		log.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("state:", s.Status().State, "ready:", s.Status().Ready())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("state:", s.Status().State)

	// The lifecycle, read back from the journal's $system stream.
	runs, err := supervisor.Runs(l)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range runs {
		fmt.Println("run ended:", r.End, "crashed:", r.Crashed, "version:", r.Transitions[0].Details["version"])
		for _, tr := range r.Transitions {
			if tr.Child == "" {
				fmt.Printf("  runtime %s -> %s\n", tr.From, tr.To)
			}
		}
		for _, tr := range r.Transitions {
			if tr.Child != "" {
				fmt.Printf("  %s %s -> %s (%s)\n", tr.Child, tr.From, tr.To, tr.Reason)
			}
		}
	}
	// Output:
	// state: running ready: true
	// state: stopped
	// run ended: stopped crashed: false version: v0.1.0
	//   runtime created -> starting
	//   runtime starting -> running
	//   runtime running -> draining
	//   runtime draining -> stopped
	//   billing idle -> running ()
	//   billing running -> stopped (runtime stopping)
}
