package command

import (
	"io"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
)

// The JSON-lines format read by `flowrt append` and written by
// `flowrt dump --json` lives in internal/eventjson, shared with the HTTP
// API; these are the command package's names for it.

// InputError lists the bad lines of an input (see eventjson.InputError).
type InputError = eventjson.InputError

// LineError reports why one input line was refused (see
// eventjson.LineError).
type LineError = eventjson.LineError

// jsonEvent is the JSON form of an event (see eventjson.Event).
type jsonEvent = eventjson.Event

// lineEvent is an event parsed from an input line.
type lineEvent struct {
	line  int // 1-based line number
	event eventlog.Event
}

// parseLines reads every line of r and returns the events for stream, in
// input order; see eventjson.ParseLines. maxEventBytes <= 0 means the
// journal's default.
func parseLines(r io.Reader, name, stream string, maxEventBytes int) ([]lineEvent, error) {
	lines, err := eventjson.ParseLines(r, name, stream, &eventjson.ParseOptions{MaxEventBytes: maxEventBytes})
	if err != nil {
		return nil, err
	}
	out := make([]lineEvent, len(lines))
	for i, l := range lines {
		out[i] = lineEvent{line: l.Line, event: l.Event}
	}
	return out, nil
}
