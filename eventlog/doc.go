// Package eventlog is flowrt's journal: an append-only, durable event log in
// one bbolt file, with per-consumer ack offsets and key-value namespaces for
// flowrt's other packages, all committed through one transactional seam.
//
// # Basics
//
// Open a journal (created when missing), append, read:
//
//	l, err := eventlog.Open("flowrt.db", nil)
//	res, err := l.Append("events", eventlog.Event{Type: "order.created", Key: "order-1", Data: body})
//	ev, err := l.Get("events", res[0].Seq)
//
// A file holds several named streams; sequences are dense from 1 within
// each. Names beginning with "$" are reserved for flowrt ("$system" holds the
// supervisor's lifecycle) and are written only through Tx.Append.
//
// Append returns once its events are committed and, under the default
// Options.SyncInterval, fsynced. Concurrent
// appends are group-committed: a single committer goroutine takes every
// request waiting when the previous commit returns and commits them in one
// bbolt transaction with one fsync. Update runs a closure in that same
// transaction, so an upper layer can append, move a consumer offset and
// write its own records atomically (see Tx).
//
// Subscribe yields a stream's events from a Position and then waits for new
// ones, woken by each commit. Consumer offsets (SetOffset, Consumers) record
// how far each named consumer has acknowledged a stream.
//
// # Format
//
// Each stream is a bucket of sequence (8 bytes, big-endian) to record, or
// to a chunk of consecutive records for a multi-event append:
//
//	+--------+---------+-------------+-------------+--- ... ---+
//	| ver 1B | kind 1B | CRC32C 4B   | unix ns 8B  | payload   |
//	+--------+---------+-------------+-------------+--- ... ---+
//
// payload is msgpack [id, type, key, headers, data]; the CRC covers the
// sequence and every other byte of the record. A meta bucket holds a magic
// value, the format version and the journal's ID. docs/FORMAT.md describes
// every bucket and the version rules.
//
// # Caveats
//
// Open refuses with a typed error, changing nothing, files it cannot trust:
// empty or foreign (ErrNotJournal), truncated (ErrTruncated), damaged meta
// pages (ErrCorrupt), newer formats (ErrVersion), and files another process
// holds (ErrLocked). A damaged record is reported when read as a
// *CorruptError naming its stream and sequence; Check verifies everything.
//
// A failed write or fsync is sticky: the journal refuses appends until it
// is reopened, because a retried fsync can report data as durable that the
// kernel already dropped. A full disk returns ErrDiskFull; reads keep
// working.
//
// bbolt never shrinks its file: Compact rewrites it offline. Long read
// transactions hold back the file's growth, so reads are chunked.
//
// A Log is safe for concurrent use. A Tx and a Subscription are not.
package eventlog
