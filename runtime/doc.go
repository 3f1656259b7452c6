// Package runtime runs flows: "when an event like this arrives, do that",
// at least once, across crashes.
//
// # Basics
//
// A Flow names a trigger (a stream, event type globs, a key glob), steps
// and sinks. Each flow is its own durable consumer (package consumer),
// named after the flow, so it acks, retries and dead-letters on its own:
// one flow's failing sink, poison event or backlog never delays another.
//
//	rt, err := runtime.New(log, nil)
//	err = rt.Add(runtime.Flow{
//		Name:  "big-orders",
//		On:    runtime.On("order.*"),
//		Steps: []runtime.Step{runtime.Filter(`data.total > 100`), runtime.Map(`{"id": data.id}`)},
//		Sinks: []runtime.Sink{runtime.FileSink("big-orders.jsonl")},
//	})
//	err = rt.Run(ctx) // until ctx is cancelled, then a graceful stop
//
// Flows can also be declared in a YAML file (LoadConfig, AddConfig), which
// compiles to the same Flow values; docs/FLOWS.md is the reference. A plain
// handler function is a flow too (Handle).
//
// Steps: Filter drops records (counted, acked), Map replaces the payload,
// FanOut turns a record into parts that each run the rest of the pipeline,
// Enrich stores a Lookup's result in a variable, Emit appends a derived
// event to a stream of the same journal. Filter, Map and FanOut take
// expressions (github.com/expr-lang/expr), compiled and type-checked by
// Add, sandboxed (no I/O, a node limit and a memory budget); each has a
// Func variant taking Go code, and Operator is a custom step.
//
// Sinks: Stdout, FileSink (fsynced before the event is acked), HTTPSink
// (5xx retried, 4xx dead-lettered), EmitSink, and any Sink written in Go.
// Every Delivery carries the source event's ID and sequence and a stable
// ID per fan-out part, so a downstream system can deduplicate. Middleware
// wraps handlers (Timeout, Recover) and SinkMiddleware wraps sinks
// (SinkTimeout, RateLimit, CircuitBreaker).
//
// The flows run under a supervisor (package supervisor) that persists the
// lifecycle in the journal's $system stream and restarts a failed flow
// alone. Stats and Collector report each flow's counters: matched,
// filtered out, processed, failed, retried, dead-lettered, in flight, lag
// and handler latency.
//
// # Failures
//
// An event is done when every record the steps produce has been delivered
// to every sink. A failing step or sink fails only its own part: the
// other parts still go on. The event is then retried with the consumer's
// backoff, and the parts and sinks that already succeeded are skipped by
// this process. It goes to the flow's dead letters after the retries, or
// at once if every failure is consumer.Permanent.
//
// # Caveats
//
// Delivery is at least once. After a crash, events above the flow's last
// committed floor are processed again, and a part that succeeded before
// the crash is delivered again: sinks deduplicate by Delivery.ID. Emit
// derives its event IDs from the source event, so a replayed emit is a
// duplicate the journal drops, as long as the journal remembers the ID
// (eventlog.Options.DedupWindow).
//
// Steps and sinks run on the flow's worker goroutines: concurrently for
// events of different keys when the flow has several workers. A Runtime
// runs once; its methods are safe for concurrent use.
package runtime
