//go:build race

package crashdaemon_test

// raceEnabled says whether this test binary has the race detector: the
// flowrt binary it builds then has it too.
const raceEnabled = true
