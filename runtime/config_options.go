package runtime

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/supervisor"
)

// goNames maps the Go field names in options errors to the file's.
type goNames []goNameField

type goNameField struct {
	goName, key string     // such as Retry.Base and retry.base
	node        *yaml.Node // the field's value, nil when absent
}

// report turns a Validate error of consumer or supervisor options into
// problems at the fields they name.
func (d *decoder) report(err error, names goNames, section *yaml.Node, p, trim string, sentinel error) {
	pairs := make([]string, 0, 2*len(names))
	// Longer names first, so Retry.MaxAttempts is not read as Retry.Max.
	sorted := slices.Clone(names)
	slices.SortStableFunc(sorted, func(a, b goNameField) int { return cmp.Compare(len(b.goName), len(a.goName)) })
	for _, n := range sorted {
		pairs = append(pairs, n.goName, n.key)
	}
	rename := strings.NewReplacer(pairs...)
	for _, e := range leafErrors(err) {
		if e == sentinel {
			continue
		}
		msg := strings.TrimPrefix(e.Error(), trim)
		at, key := section, ""
		for _, n := range sorted {
			if strings.HasPrefix(msg, n.goName+" ") {
				key = n.key
				if n.node != nil {
					at = n.node
				}
				break
			}
		}
		where := p
		if key != "" {
			where = field(p, key)
		}
		d.errorf(at, where, "%s", rename.Replace(msg))
	}
}

// leafErrors flattens joined errors.
func leafErrors(err error) []error {
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range m.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}

func (d *decoder) consumerOptions(n *yaml.Node, p string) *consumer.Options {
	o := d.object(n, p, unknownField, consumerFields...)
	if o == nil {
		return nil
	}
	var opts consumer.Options
	intField := func(k string, dst *int) {
		if v := o.get(k); v != nil {
			*dst, _ = d.integer(v, field(p, k))
		}
	}
	durField := func(k string, dst *time.Duration) {
		if v := o.get(k); v != nil {
			*dst, _ = d.duration(v, field(p, k))
		}
	}
	intField("workers", &opts.Workers)
	intField("max_in_flight", &opts.MaxInFlight)
	durField("handler_timeout", &opts.HandlerTimeout)
	durField("commit_interval", &opts.CommitInterval)
	intField("commit_every", &opts.CommitEvery)
	if v := o.get("start"); v != nil {
		if s, ok := d.str(v, field(p, "start")); ok {
			if pos, err := parseStart(s); err != nil {
				d.errorf(v, field(p, "start"), "%v", err)
			} else {
				opts.Start = &pos
			}
		}
	}
	if v := o.get("key_failure"); v != nil {
		if s, ok := d.str(v, field(p, "key_failure")); ok {
			switch s {
			case "hold-key":
				opts.KeyFailure = consumer.HoldKey
			case "skip-ahead":
				opts.KeyFailure = consumer.SkipAhead
			default:
				d.errorf(v, field(p, "key_failure"), "unknown key_failure %q (want hold-key or skip-ahead)", s)
			}
		}
	}
	names := goNames{
		{"Workers", "workers", o.get("workers")},
		{"MaxInFlight", "max_in_flight", o.get("max_in_flight")},
		{"HandlerTimeout", "handler_timeout", o.get("handler_timeout")},
		{"CommitInterval", "commit_interval", o.get("commit_interval")},
		{"CommitEvery", "commit_every", o.get("commit_every")},
		{"KeyFailure", "key_failure", o.get("key_failure")},
	}
	if v := o.get("retry"); v != nil {
		rp := field(p, "retry")
		if ro := d.object(v, rp, unknownField, retryFields...); ro != nil {
			if v := ro.get("max_attempts"); v != nil {
				opts.Retry.MaxAttempts, _ = d.integer(v, field(rp, "max_attempts"))
			}
			for _, f := range []struct {
				k   string
				dst *time.Duration
			}{{"base", &opts.Retry.Base}, {"max", &opts.Retry.Max}} {
				if v := ro.get(f.k); v != nil {
					*f.dst, _ = d.duration(v, field(rp, f.k))
				}
			}
			if v := ro.get("multiplier"); v != nil {
				opts.Retry.Multiplier, _ = d.number(v, field(rp, "multiplier"))
			}
			if v := ro.get("jitter"); v != nil {
				opts.Retry.Jitter, _ = d.number(v, field(rp, "jitter"))
			}
			names = append(names, goNames{
				{"Retry.MaxAttempts", "retry.max_attempts", ro.get("max_attempts")},
				{"Retry.Base", "retry.base", ro.get("base")},
				{"Retry.Max", "retry.max", ro.get("max")},
				{"Retry.Multiplier", "retry.multiplier", ro.get("multiplier")},
				{"Retry.Jitter", "retry.jitter", ro.get("jitter")},
			}...)
		}
	}
	if err := opts.Validate(); err != nil {
		d.report(err, names, o.node, p, "", consumer.ErrInvalidOptions)
	}
	return &opts
}

// parseStart reads a consumer start position: earliest, latest, seq:N or
// time:RFC3339.
func parseStart(s string) (eventlog.Position, error) {
	switch {
	case s == "earliest":
		return eventlog.Earliest(), nil
	case s == "latest":
		return eventlog.Latest(), nil
	case strings.HasPrefix(s, "seq:"):
		n, err := strconv.ParseUint(strings.TrimPrefix(s, "seq:"), 10, 64)
		if err != nil || n == 0 {
			return eventlog.Position{}, fmt.Errorf("bad start %q: want seq:N with N a sequence number from 1", s)
		}
		return eventlog.AtSeq(n), nil
	case strings.HasPrefix(s, "time:"):
		t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(s, "time:"))
		if err != nil {
			return eventlog.Position{}, fmt.Errorf("bad start %q: want time:RFC3339, such as time:2025-01-02T15:04:05Z", s)
		}
		return eventlog.AtTime(t), nil
	}
	return eventlog.Position{}, fmt.Errorf("bad start %q (want earliest, latest, seq:N or time:RFC3339)", s)
}

func (d *decoder) restartPolicy(n *yaml.Node, p string) *supervisor.RestartPolicy {
	o := d.object(n, p, unknownField, restartFields...)
	if o == nil {
		return nil
	}
	var r supervisor.RestartPolicy
	for _, f := range []struct {
		k   string
		dst *time.Duration
	}{{"base", &r.Base}, {"max", &r.Max}, {"window", &r.Window}} {
		if v := o.get(f.k); v != nil {
			*f.dst, _ = d.duration(v, field(p, f.k))
		}
	}
	if v := o.get("multiplier"); v != nil {
		r.Multiplier, _ = d.number(v, field(p, "multiplier"))
	}
	if v := o.get("max_restarts"); v != nil {
		r.MaxRestarts, _ = d.integer(v, field(p, "max_restarts"))
	}
	if err := (&supervisor.Options{Restart: r}).Validate(); err != nil {
		d.report(err, goNames{
			{"Base", "base", o.get("base")},
			{"Max", "max", o.get("max")},
			{"Multiplier", "multiplier", o.get("multiplier")},
			{"MaxRestarts", "max_restarts", o.get("max_restarts")},
			{"Window", "window", o.get("window")},
		}, o.node, p, "Restart.", supervisor.ErrInvalidOptions)
	}
	return &r
}
