package runtime_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/runtime"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/config")

// configOptions are the Options the golden configs are validated against.
func configOptions(audit runtime.Sink) *runtime.Options {
	return &runtime.Options{
		Lookups: map[string]runtime.Lookup{
			"customer": func(_ context.Context, key any) (any, error) {
				return map[string]any{"id": key, "name": "Ada"}, nil
			},
		},
		Sinks: map[string]runtime.Sink{"audit": audit},
	}
}

// configProblems loads and validates a config as `flowrt validate` does
// and returns the error text, "" when it is valid.
func configProblems(t *testing.T, path string) string {
	t.Helper()
	c, err := runtime.LoadConfig(path)
	if err == nil {
		err = c.Validate(configOptions(newCollector()))
	}
	if err == nil {
		return ""
	}
	var ce *runtime.ConfigError
	require.ErrorAs(t, err, &ce, "every problem is a ConfigError")
	require.ErrorIs(t, err, runtime.ErrInvalidConfig)
	require.NotEmpty(t, ce.Problems)
	for _, p := range ce.Problems {
		assert.Equal(t, path, p.File)
		assert.Positive(t, p.Line, p.String())
		assert.Positive(t, p.Column, p.String())
	}
	return err.Error() + "\n"
}

func TestConfigGolden(t *testing.T) {
	tests := []struct {
		name  string
		valid bool
	}{
		{name: "valid", valid: true},
		{name: "unknown_field"},
		{name: "bad_expr"},
		{name: "unknown_sink_kind"},
		{name: "unknown_lookup"},
		{name: "duplicate_names"},
		{name: "bad_options"},
		{name: "several_problems"},
		{name: "not_yaml"},
		{name: "wrong_version"},
		{name: "wrong_types"},
		{name: "missing_fields"},
		{name: "emit_loop"},
		{name: "empty"},
		{name: "bad_state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join("testdata", "config", tt.name+".yaml")
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			got := configProblems(t, path)
			assert.Equal(t, tt.valid, got == "", "valid")
			if *updateGolden {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test -run TestConfigGolden -update to create it")
			assert.Equal(t, string(want), got)
		})
	}
}

func TestConfigGoldenCoversTestdata(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	require.NoError(t, err)
	for _, f := range files {
		_, err := os.Stat(strings.TrimSuffix(f, ".yaml") + ".golden")
		assert.NoError(t, err, "%s has no golden file: add it to TestConfigGolden", f)
	}
}

func TestParseConfigBuildsFlows(t *testing.T) {
	c, err := runtime.LoadConfig(filepath.Join("testdata", "config", "valid.yaml"))
	require.NoError(t, err)
	assert.Equal(t, 1, c.Version)
	type flowShape struct {
		name    string
		on      runtime.Trigger
		steps   []string
		sinks   int
		options bool
	}
	var got []flowShape
	for _, f := range c.Flows {
		s := flowShape{name: f.Name, on: f.On, sinks: len(f.Sinks), options: f.Consumer != nil && f.Restart != nil}
		for _, st := range f.Steps {
			s.steps = append(s.steps, st.Kind())
		}
		got = append(got, s)
	}
	assert.Equal(t, []flowShape{
		{name: "big-orders", on: runtime.Trigger{Types: []string{"order.*"}, Key: "eu-*"}, steps: []string{"filter", "map"}, sinks: 2, options: true},
		{name: "order-lines", on: runtime.On("order.created"), steps: []string{"enrich", "fan_out", "map", "emit"}, sinks: 1},
		{name: "shipments", on: runtime.Trigger{Stream: "shipments", Types: []string{"shipment.requested"}}, steps: []string{"map"}, sinks: 2},
		{name: "refunds", on: runtime.On("payment.refunded"), steps: []string{"fan_out"}, sinks: 2},
	}, got)
	assert.Equal(t, "European orders over 100, reshaped.", c.Flows[0].Description)
	assert.Equal(t, "filter(data.total > 100)", c.Flows[0].Steps[0].String())

	co := c.Flows[0].Consumer
	assert.Equal(t, 2, co.Workers)
	assert.Equal(t, 100, co.MaxInFlight)
	assert.Equal(t, 10*time.Second, co.HandlerTimeout)
	assert.Equal(t, "earliest", co.Start.String())
	assert.Equal(t, 50*time.Millisecond, co.CommitInterval)
	assert.Equal(t, 1000, co.CommitEvery)
	assert.Equal(t, 3, co.Retry.MaxAttempts)
	assert.Equal(t, 10*time.Millisecond, co.Retry.Base)
	assert.Equal(t, time.Second, co.Retry.Max)
	assert.InDelta(t, 0.1, co.Retry.Jitter, 1e-9)
	r := c.Flows[0].Restart
	assert.Equal(t, 5, r.MaxRestarts)
	assert.Equal(t, time.Minute, r.Window)
}

func TestParseConfigStartPositions(t *testing.T) {
	tests := []struct {
		name, start, want string
	}{
		{name: "earliest", start: "earliest", want: "earliest"},
		{name: "latest", start: "latest", want: "latest"},
		{name: "seq", start: "seq:42", want: "seq 42"},
		{name: "time", start: "time:2025-01-02T15:04:05Z", want: eventlog.AtTime(time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC)).String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "version: 1\nflows:\n  - name: f\n    sinks: [{stdout: {}}]\n    consumer: {start: \"" + tt.start + "\"}\n"
			c, err := runtime.ParseConfig("flows.yaml", []byte(src))
			require.NoError(t, err)
			assert.Equal(t, tt.want, c.Flows[0].Consumer.Start.String())
		})
	}
}

func TestParseConfigExpressionPosition(t *testing.T) {
	tests := []struct {
		name, value string
		wantCol     int
	}{
		{name: "plain", value: `data.x + nope`, wantCol: 23},
		{name: "single quoted", value: `'data.x + nope'`, wantCol: 24},
		{name: "double quoted", value: `"data.x + nope"`, wantCol: 24},
		{name: "escaped falls back to the value", value: `"data.x + \u006eope"`, wantCol: 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "version: 1\nflows:\n  - name: f\n    steps:\n      - map: " + tt.value + "\n    sinks: [{stdout: {}}]\n"
			_, err := runtime.ParseConfig("f.yaml", []byte(src))
			var ce *runtime.ConfigError
			require.ErrorAs(t, err, &ce)
			require.Len(t, ce.Problems, 1, err.Error())
			p := ce.Problems[0]
			assert.Equal(t, 5, p.Line)
			assert.Equal(t, tt.wantCol, p.Column, p.String())
			assert.Equal(t, "flows[0].steps[0].map", p.Path)
			assert.Contains(t, p.Msg, "unknown name nope")
		})
	}
}

func TestConfigFileSinkPathIsRelativeToTheConfig(t *testing.T) {
	dir := t.TempDir()
	src := "version: 1\nflows:\n  - name: all\n    sinks: [{file: {path: out/all.jsonl}}]\n"
	path := filepath.Join(dir, "conf", "flows.yaml")
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(src), 0o644))
	c, err := runtime.LoadConfig(path)
	require.NoError(t, err)

	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream, event("x.happened", "", `{"n":1}`))
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	require.NoError(t, rt.AddConfig(c))
	runConfig(t, rt)
	lines := readConfigOutput(t, filepath.Join(dir, "conf", "out", "all.jsonl"))
	require.Len(t, lines, 1)
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := runtime.LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.NotErrorIs(t, err, runtime.ErrInvalidConfig)
}

// TestAddConfigRunsFlows runs the valid config end to end: a filter and a
// map into a file and a registered sink with middleware, an enrich and a
// fan_out into an emit, and a second flow over the emitted stream.
func TestAddConfigRunsFlows(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", "config", "valid.yaml"))
	require.NoError(t, err)
	path := filepath.Join(dir, "valid.yaml")
	require.NoError(t, os.WriteFile(path, src, 0o644))
	c, err := runtime.LoadConfig(path)
	require.NoError(t, err)

	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream,
		event("order.created", "eu-1", `{"id":"A1","total":250,"customer_id":"c1","items":[{"sku":"S1"},{"sku":"S2"}]}`),
		event("order.created", "us-1", `{"id":"A2","total":300,"customer_id":"c2","items":[{"sku":"S3"}]}`),
		event("order.created", "eu-2", `{"id":"A3","total":20,"customer_id":"c3","items":[]}`),
	)
	audit := newCollector()
	rt, err := runtime.New(l, configOptions(audit))
	require.NoError(t, err)
	require.NoError(t, rt.AddConfig(c))
	require.Len(t, rt.Flows(), 4)
	runConfig(t, rt)

	big := readConfigOutput(t, filepath.Join(dir, "out", "big-orders.jsonl"))
	require.Len(t, big, 1, "only the European order over 100")
	assert.Equal(t, "big-orders", big[0]["flow"])
	assert.Equal(t, map[string]any{"order": "A1", "total": 250.0, "region": "eu-1"}, big[0]["data"])
	assert.EqualValues(t, 1, big[0]["source"].(map[string]any)["seq"])
	require.Len(t, audit.deliveries(), 1)
	assert.Equal(t, big[0]["id"], audit.deliveries()[0].ID)

	lines := readConfigOutput(t, filepath.Join(dir, "out", "lines.jsonl"))
	require.Len(t, lines, 3, "one line per item")
	first := lines[0]
	assert.Equal(t, map[string]any{"order": "A1", "sku": "S1", "customer": "Ada", "part": "0"}, first["data"])
	assert.True(t, strings.HasSuffix(first["id"].(string), "/0"), "part identity: %v", first["id"])

	ships := readConfigOutput(t, filepath.Join(dir, "out", "shipments.jsonl"))
	require.Len(t, ships, 3, "one shipment per emitted event")
	assert.Equal(t, map[string]any{"sku": "S1", "for": "Ada"}, ships[0]["data"])
	logged, err := l.Read("audit-log", 1, 10)
	require.NoError(t, err)
	require.Len(t, logged, 3)
	assert.JSONEq(t, `{"sku":"S1"}`, string(logged[0].Data))
}

func TestAddConfigAllOrNone(t *testing.T) {
	c, err := runtime.LoadConfig(filepath.Join("testdata", "config", "unknown_lookup.yaml"))
	require.NoError(t, err)
	l := flowtest.MustOpenLog(t, nil)
	rt, err := runtime.New(l, configOptions(newCollector()))
	require.NoError(t, err)
	err = rt.AddConfig(c)
	var ce *runtime.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Len(t, ce.Problems, 2, err.Error())
	assert.Empty(t, rt.Flows(), "no flow of an invalid config is added")
}

func TestAddConfigReportsFlowsAlreadyAdded(t *testing.T) {
	src := "version: 1\nflows:\n  - name: orders\n    sinks: [{stdout: {}}]\n  - name: fresh\n    sinks: [{stdout: {}}]\n"
	c, err := runtime.ParseConfig("flows.yaml", []byte(src))
	require.NoError(t, err)
	l := flowtest.MustOpenLog(t, nil)
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	require.NoError(t, rt.Add(runtime.Flow{Name: "orders", Sinks: []runtime.Sink{newCollector()}}))
	err = rt.AddConfig(c)
	require.ErrorIs(t, err, runtime.ErrInvalidConfig)
	assert.Equal(t, `flows.yaml:3:11: flows[0].name: a flow named "orders" was already added to the runtime`, err.Error())
	assert.Len(t, rt.Flows(), 1)
}

// TestExampleFlows keeps examples/flows.yaml valid and runnable: it runs
// it over examples/events.jsonl and checks what each file sink wrote.
func TestExampleFlows(t *testing.T) {
	example := filepath.Join("..", "examples", "flows.yaml")
	c, err := runtime.LoadConfig(example)
	require.NoError(t, err)
	require.NoError(t, c.Validate(nil), "the example needs no lookups or registered sinks")

	dir := t.TempDir()
	src, err := os.ReadFile(example)
	require.NoError(t, err)
	path := filepath.Join(dir, "flows.yaml")
	require.NoError(t, os.WriteFile(path, src, 0o644))
	c, err = runtime.LoadConfig(path)
	require.NoError(t, err)

	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream, exampleEvents(t, filepath.Join("..", "examples", "events.jsonl"))...)
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	require.NoError(t, rt.AddConfig(c))
	runConfig(t, rt)

	for file, want := range map[string]int{
		"orders.jsonl":        3, // every order.created
		"big-orders.jsonl":    2, // total_cents >= 1400
		"pick-lines.jsonl":    3, // one per item
		"picks.jsonl":         3, // the warehouse's view of the emitted picks
		"card-payments.jsonl": 1,
	} {
		assert.Len(t, readConfigOutput(t, filepath.Join(dir, "out", file)), want, file)
	}
	picks := readConfigOutput(t, filepath.Join(dir, "out", "picks.jsonl"))
	assert.Equal(t, map[string]any{"pick": "TEA-GREEN-100G x2", "for": "order-1001"}, picks[0]["data"])
}

// exampleEvents reads the events of a JSON-lines file like
// examples/events.jsonl (type, key, headers, data).
func exampleEvents(t *testing.T, path string) []eventlog.Event {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []eventlog.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			Type    string            `json:"type"`
			Key     string            `json:"key"`
			Headers map[string]string `json:"headers"`
			Data    json.RawMessage   `json:"data"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
		out = append(out, eventlog.Event{Type: line.Type, Key: line.Key, Headers: line.Headers, Data: line.Data})
	}
	require.NoError(t, sc.Err())
	return out
}

func runConfig(t *testing.T, rt *runtime.Runtime) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, rt.RunUntilIdle(ctx))
}

// readConfigOutput reads a file sink's output, one JSON delivery a line.
func readConfigOutput(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

func FuzzParseConfig(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	require.NoError(f, err)
	for _, file := range files {
		data, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("version: 1\nflows: [&f {name: x, sinks: [{stdout: {}}]}, *f]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := runtime.ParseConfig("fuzz.yaml", data)
		if err != nil {
			var ce *runtime.ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error is not a ConfigError with problems: %v", err)
			}
			return
		}
		if len(c.Flows) == 0 {
			t.Fatal("a valid config has flows")
		}
		_ = c.Validate(nil)
	})
}

func TestParseConfigAliases(t *testing.T) {
	t.Run("reused values", func(t *testing.T) {
		src := "version: 1\nflows:\n" +
			"  - name: a\n    consumer: &c {workers: 2, max_in_flight: 10}\n    sinks: &s [{stdout: {}}]\n" +
			"  - name: b\n    consumer: *c\n    sinks: *s\n"
		c, err := runtime.ParseConfig("flows.yaml", []byte(src))
		require.NoError(t, err)
		require.Len(t, c.Flows, 2)
		assert.Equal(t, 2, c.Flows[1].Consumer.Workers)
		assert.Len(t, c.Flows[1].Sinks, 1)
	})
	t.Run("expansion bomb", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("version: 1\nflows:\n  - &f\n    name: a\n    sinks: [{stdout: {}}]\n    steps: [&s {map: 'data'}")
		b.WriteString(strings.Repeat(", *s", 500))
		b.WriteString("]\n")
		b.WriteString(strings.Repeat("  - *f\n", 500))
		_, err := runtime.ParseConfig("bomb.yaml", []byte(b.String()))
		require.ErrorIs(t, err, runtime.ErrInvalidConfig)
		assert.Contains(t, err.Error(), "bomb.yaml:1:1: the file's aliases expand to more than")
	})
}

// TestExpressionExamples runs the expressions docs/FLOWS.md shows, so the
// examples stay true.
func TestExpressionExamples(t *testing.T) {
	const data = `{"customer":{"id":"c-42","vip":true},"items":[{"sku":"TEA","qty":2,"price_cents":799},{"sku":"MUG","qty":1,"price_cents":1200}],"total_cents":2798,"currency":"eur","method":"card"}`
	maps := []struct {
		expr string
		want any
	}{
		{`{"order": key, "total": data.total_cents / 100.0}`, map[string]any{"order": "order-1001", "total": 27.98}},
		{`data.items[0].sku + " x" + string(data.items[0].qty)`, "TEA x2"},
		{`upper(data.currency)`, "EUR"},
		{`map(data.items, .sku)`, []any{"TEA", "MUG"}},
		{`sum(map(data.items, .qty * .price_cents))`, 2798.0},
		{`data.total_cents > 1400 ? "big" : "small"`, "big"},
		{`data.coupon?.code ?? "none"`, "none"},
		{`{"seq": seq, "day": time.Format("2006-01-02") != ""}`, map[string]any{"seq": 1, "day": true}},
		{`type + "/" + id`, "order.created/" + "ID"},
	}
	filters := []struct {
		expr string
		want bool
	}{
		{`data.total_cents >= 1400`, true},
		{`type == "order.created" && data.method == "card"`, true},
		{`key startsWith "order-10"`, true},
		{`data.currency in ["EUR", "USD"]`, false},
		{`any(data.items, .qty > 1)`, true},
		{`headers.source == "shop-7"`, true},
		{`data.customer?.vip ?? false`, true},
		{`(data.total ?? 0) > 100`, false},
		{`len(data.items) > 2`, false},
	}
	l := flowtest.MustOpenLog(t, nil)
	e := event("order.created", "order-1001", data)
	e.Headers = map[string]string{"source": "shop-7"}
	res := flowtest.MustAppend(t, l, eventlog.DefaultStream, e)
	var flows []runtime.Flow
	mapSinks := make([]*collector, len(maps))
	for i, m := range maps {
		mapSinks[i] = newCollector()
		flows = append(flows, runtime.Flow{Name: "map" + string(rune('a'+i)), Steps: []runtime.Step{runtime.Map(m.expr)}, Sinks: []runtime.Sink{mapSinks[i]}})
	}
	filterSinks := make([]*collector, len(filters))
	for i, f := range filters {
		filterSinks[i] = newCollector()
		flows = append(flows, runtime.Flow{Name: "filter" + string(rune('a'+i)), Steps: []runtime.Step{runtime.Filter(f.expr)}, Sinks: []runtime.Sink{filterSinks[i]}})
	}
	runIdle(t, l, nil, flows...)
	for i, m := range maps {
		got := mapSinks[i].deliveries()
		if assert.Len(t, got, 1, m.expr) {
			want := m.want
			if s, ok := want.(string); ok {
				want = strings.ReplaceAll(s, "ID", res[0].ID.String())
			}
			assert.Equal(t, want, got[0].Payload, m.expr)
		}
	}
	for i, f := range filters {
		assert.Equal(t, f.want, len(filterSinks[i].deliveries()) == 1, f.expr)
	}
}

func TestConfigStatefulFlowRuns(t *testing.T) {
	l := flowtest.MustOpenLog(t, nil)
	flowtest.MustAppend(t, l, eventlog.DefaultStream,
		event("order.created", "c1", `{"total": 5}`),
		event("order.created", "c2", `{"total": 7}`),
		event("order.created", "c1", `{"total": 1}`),
	)
	c, err := runtime.ParseConfig("flows.yaml", []byte(`version: 1
flows:
  - name: spend
    on: {types: order.created}
    state_version: 2
    snapshot_every: 1h
    steps:
      - reduce: {func: sum, value: data.total, as: spent}
      - map: '{"customer": key, "spent": spent}'
    sinks:
      - stdout: {}
`))
	require.NoError(t, err)
	require.Equal(t, 2, c.Flows[0].StateVersion)
	rt, err := runtime.New(l, nil)
	require.NoError(t, err)
	require.NoError(t, rt.AddConfig(c))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, rt.RunUntilIdle(ctx))
	st, err := rt.State("spend")
	require.NoError(t, err)
	items, err := st.Items("")
	require.NoError(t, err)
	assert.Equal(t, []runtime.StateEntry{{Key: "c1", Value: 6.0}, {Key: "c2", Value: 7.0}}, items)
}
