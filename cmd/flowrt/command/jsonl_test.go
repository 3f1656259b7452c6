package command

import (
	"errors"
	"strings"
	"testing"

	"github.com/flowrt/flowrt/internal/eventjson"
	"github.com/stretchr/testify/require"
)

// The format itself is tested in internal/eventjson; these tests check the
// command package's wrappers.

const testID = "01JGZ5W9V4XJ3Q8N6T2R1M0ABC"

func TestParseLinesWrapper(t *testing.T) {
	got, err := parseLines(strings.NewReader("{\"type\":\"a\"}\n\n{\"type\":\"b\",\"id\":\""+testID+"\"}\n"), "in", "s", 0)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, 1, got[0].line)
	require.Equal(t, "a", got[0].event.Type)
	require.Equal(t, 3, got[1].line)
	require.Equal(t, testID, got[1].event.ID.String())

	_, err = parseLines(strings.NewReader(`{"type":"a","data":"`+strings.Repeat("x", 2000)+`"}`), "in", "s", 1024)
	var ie *InputError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, ExitUsage, ExitCode(err))
	require.Contains(t, err.Error(), "in: line 1: event too large")
}

func TestEncodeWrappers(t *testing.T) {
	ev, err := eventjson.ParseLine([]byte(`{"type":"a","id":"`+testID+`","data":{"$base64":"/wA="}}`), "s")
	require.NoError(t, err)
	require.Equal(t, `{"$base64":"/wA="}`, string(eventjson.EncodeData(ev.Data)))
	line, err := eventjson.EncodeLine(ev)
	require.NoError(t, err)
	require.Equal(t, `{"id":"`+testID+`","type":"a","data":{"$base64":"/wA="}}`+"\n", string(line))
	b, err := eventjson.MarshalLine(jsonEvent{Type: "<a>"})
	require.NoError(t, err)
	require.Equal(t, `{"type":"<a>"}`+"\n", string(b))
	require.Equal(t, "invalid event", eventjson.Message(errors.New("flowrt/eventlog: invalid event")))
}
