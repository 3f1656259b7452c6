// Package snapshot keeps flow state in the journal's own file, committed
// in the same transaction as the flow's ack floor; takes snapshots of it;
// and backs up and restores whole journals.
//
// # Basics
//
// A State is one flow's keyed state. The flow stages the changes of each
// event once the event is done (Stage); the State is the flow consumer's
// commit hook (consumer.Options.Commit), and writes, in the transaction
// that commits the floor, the changes of exactly the events that floor
// covers:
//
//	st, err := snapshot.Open(journal, "orders-per-customer")
//	opts := &consumer.Options{Commit: st}
//	// in the handler, once the event succeeded:
//	st.Stage(e.Seq, []snapshot.Change{{Key: e.Key, Value: newValue}})
//
// After a crash the committed state is therefore exactly the effect of
// the events at or below the committed floor: effectively once. Get and
// Items read the state with the staged changes; Read reads what is
// committed, on a journal at rest too. runtime.Reduce does all of this
// for flows; docs/STATE.md states the guarantee and its limits.
//
// Take copies a state at its committed floor into an immutable snapshot,
// and moves the state's retention guard (a consumer offset on the
// stream, GuardName) up to it, so truncation keeps what a rebuild from
// the newest snapshot replays. Reset loads a snapshot back.
//
// Backup writes a consistent copy of a journal while it is being written,
// verified before it is renamed into place; Restore copies a verified
// backup to a new path.
//
// # Caveats
//
// The changes of one key must be staged in sequence order: the consumer
// guarantees it when the state key is the event key. A State is safe for
// concurrent use.
package snapshot
