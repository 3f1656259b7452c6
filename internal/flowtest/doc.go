// Package flowtest holds test helpers for flowrt's packages, in the manner
// of bbolt's internal/btesting.
//
// # Basics
//
// MustOpenLog opens a fresh journal in t.TempDir() and registers a cleanup
// that closes it and verifies the file, so every test that uses it also
// checks the journal's invariants on the way out:
//
//	l := flowtest.MustOpenLog(t, nil)
//	res := flowtest.MustAppend(t, l, "orders", flowtest.Event("order.created", "1"))
//
// The cleanup reopens the file read-only and runs Log.Check: sequences are
// contiguous, every record's CRC and encoding are valid, heads agree with
// the records, and every consumer offset is at or below its stream's head.
//
// # Crash tests
//
// StartChild runs the test binary again as a child process running one
// test function, which calls RunChild, so a crash test can kill it with
// SIGKILL (Child.KillAfter) and check what survived; Cycles and Seed read
// the long run's settings shared by the crash tests.
//
// # Caveats
//
// A test that means to leave a damaged journal behind (corruption tests)
// must not open it through MustOpenLog: the cleanup would fail the test.
// The helpers call t.Fatal on failure, so call them from the test's own
// goroutine only.
package flowtest
