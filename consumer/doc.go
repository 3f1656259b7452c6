// Package consumer runs durable, at-least-once consumers over a flowrt
// journal.
//
// # Basics
//
// A Reader is a named consumer of one stream. Open registers the name (or
// finds its committed offset) and Run delivers every event after that
// offset to a Handler:
//
//	r, err := consumer.Open(log, "events", "billing", nil)
//	err = r.Run(ctx, func(ctx context.Context, e eventlog.Event) error {
//		return charge(ctx, e) // nil acks; an error retries; Permanent dead-letters
//	})
//
// The Reader's progress is its ack floor: the highest sequence such that
// every event at or below it is done (acked or dead-lettered). Completions
// above a gap wait for the gap. The floor is committed to the journal every
// CommitInterval (100ms) while events flow, after CommitEvery events, soon
// after it catches up with the stream's last event (CommitInterval/10),
// and on
// the way out. After a crash, the events above the last committed floor are
// delivered again (except those already dead-lettered); none at or below it
// is.
//
// With Workers > 1 events run in parallel, but events with the same key
// never run concurrently and always run in sequence order. MaxInFlight
// bounds the events between the floor and the newest fetched one, so memory
// does not grow with the backlog.
//
// A failed event is retried with exponential backoff and jitter. Its attempt
// count and next due time are written to the journal before it is retried,
// so a restart neither resets nor hurries them. After Retry.MaxAttempts, or
// at once for a Permanent error, the event goes to the consumer's dead
// letters and the floor moves past it. DeadLetters, Redeliver and Purge
// manage them; Reset replays or skips.
//
// # Stopping
//
// Shutdown stops fetching, lets running handlers finish with their contexts
// intact until its own context expires, and commits the floor: after a
// clean Shutdown, a new Reader delivers nothing twice. Close cancels the
// handlers' contexts at once. An event interrupted either way is not
// counted as a failed attempt.
//
// # Caveats
//
// At-least-once means a handler can see an event again after a crash, up
// to CommitInterval's worth of events: make handlers idempotent, for
// example with the event's ID. docs/GUARANTEES.md states every guarantee
// precisely.
package consumer
