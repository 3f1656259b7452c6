// Package supervisor runs flowrt's children (flows, consumers) under one
// lifecycle, and persists that lifecycle as events in the journal's $system
// stream. A start therefore knows whether the last run crashed, what it was
// doing and where its consumers resume, and an operator can read the whole
// history back.
//
// # Basics
//
// Create a Supervisor on a journal, add its children, start it, and stop it
// with a deadline:
//
//	s, err := supervisor.New(l, nil)     // l is an *eventlog.Log
//	err = s.Add("billing", billing, nil) // a Child: Run(ctx) error
//	err = s.Start(ctx)                   // returns once running
//	...
//	err = s.Stop(ctx)                    // drains; ctx.Err() if it had to cancel
//
// Run starts, blocks, and stops gracefully when its context is cancelled.
// RunUntilIdle stops once every Idler child has caught up. Wait and Run
// return nil after a clean stop and an error wrapping ErrFailed or
// ErrAborted otherwise.
//
// The runtime goes through created, starting, recovering (after a crash),
// running, draining and stopped. A run that fails or is aborted ends in
// failed instead. Each child is idle, running, backing_off, failed (given
// up) or stopped. Every transition is checked against the state machine
// (CanTransition, CanChildTransition); an illegal one is refused with
// ErrIllegalTransition. A legal one is appended to $system, keyed by the
// run's ID (a ULID per Supervisor), before it takes effect. Status,
// Changed and Done watch the lifecycle; Status.Ready and Status.Healthy
// answer /readyz and /healthz.
//
// A child whose Run fails or panics is restarted alone (one-for-one),
// after RestartPolicy.Delay: exponential backoff from Base, capped at Max.
// After MaxRestarts restarts within Window, the next failure puts the
// child in failed. The runtime keeps running but reports itself unhealthy.
//
// Stop records draining, then calls Shutdown on Drainer children and
// cancels the others' contexts. It waits for them and records stopped. If
// its context expires first, it cancels every child, records that the stop
// timed out, and returns ctx.Err(). Stop is idempotent. Abort fails the run
// at once.
//
// Start reads how the previous run ended. If it never reached stopped or
// failed, it crashed: before any child runs, Start records one
// supervisor.recovery event. The event names the crashed run, its last
// state, its children's last states, and each consumer's committed offset
// and pending events. Runs reads every run back, and
// `flowrt dump --stream '$system' --json` prints the raw events.
// docs/LIFECYCLE.md describes the states, every event and its fields, and
// how to read a crash's history.
//
// # Caveats
//
// A Supervisor runs once: Add only before Start, and Start only once. To
// run again, create a new Supervisor, which is a new run.
//
// A restart calls the same Child's Run again. A consumer.Reader runs only
// once, so wrap it in a Child that opens a new Reader for each Run and
// forwards Shutdown.
//
// Crash detection takes the newest run in $system as the previous run. The
// journal's file lock keeps other processes out, but within one process
// run one Supervisor per journal at a time.
//
// A record the journal refuses (a full disk, a closed journal) is not
// retried. A Start that cannot record fails. A Stop that cannot record
// draining or stopped ends the run failed: a failure is applied even
// unrecorded. A child's transition is applied and the error is logged.
//
// Transition times come from Options.Clock. A Run's Started and Last are
// the journal's append times, and retention's KeepFor compares those with
// Options.Clock. Retention applies at Start only, and KeepRuns counts the
// starting run.
//
// A Supervisor's methods are safe for concurrent use.
package supervisor
