package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/flowrt/flowrt/consumer"
	"github.com/flowrt/flowrt/eventlog"
)

// EmitSpec configures an emit step or sink: it appends a derived event to
// a stream of the same journal, so flows can chain.
type EmitSpec struct {
	// Stream is the stream the derived event is appended to. Required.
	Stream string
	// Type is the derived event's type. Required.
	Type string
	// Key is an expression giving the derived event's key. Default: the
	// source event's key.
	Key string
	// Data is an expression giving the derived event's data, encoded as
	// JSON. Default: the record's payload.
	Data string
}

// Headers set on every derived event, naming where it came from.
const (
	HeaderFlow     = "flowrt-flow"      // the flow that emitted the event
	HeaderSource   = "flowrt-source"    // the source event as stream/seq
	HeaderSourceID = "flowrt-source-id" // the source event's ID
)

// Emit appends a derived event for each record and passes the record on.
// The derived event's ID is derived from the flow, the step, the source
// event's ID and the record's part, so a retry after a crash is a
// duplicate the journal drops, never a second event.
func Emit(spec EmitSpec) Step { return Step{kind: "emit", emit: spec} }

// emitter appends derived events; site tells its steps and sinks apart in
// the derived IDs.
type emitter struct {
	j         Journal
	flow      string
	site      string
	spec      EmitSpec
	key, data *program
}

func (c *compiler) compileEmit(spec EmitSpec) (*emitter, error) {
	var errs []error
	if err := eventlog.ValidateName(spec.Stream); err != nil {
		errs = append(errs, fmt.Errorf("emit stream: %w", err))
	}
	if err := eventlog.ValidateEvents([]eventlog.Event{{Type: spec.Type}}, 0); err != nil {
		var ee *eventlog.EventError
		if errors.As(err, &ee) {
			err = ee.Err // the type's problem, without the event's index
		}
		errs = append(errs, fmt.Errorf("emit type: %w", err))
	}
	e := &emitter{j: c.rt.j, flow: c.flow, site: c.site, spec: spec}
	var err error
	if spec.Key != "" {
		if e.key, err = compileExpr(spec.Key, c.sc, false); err != nil {
			errs = append(errs, err)
		}
	}
	if spec.Data != "" {
		if e.data, err = compileExpr(spec.Data, c.sc, false); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return e, nil
}

func (e *emitter) event(r Record) (eventlog.Event, error) {
	src := r.Event
	ev := eventlog.Event{
		ID:   eventlog.DeriveID("flowrt/emit", e.flow, e.site, src.Stream, src.ID.String(), r.Part),
		Type: e.spec.Type,
		Key:  src.Key,
		Headers: map[string]string{
			HeaderFlow:     e.flow,
			HeaderSource:   src.Stream + "/" + strconv.FormatUint(src.Seq, 10),
			HeaderSourceID: src.ID.String(),
		},
	}
	if e.key != nil {
		k, err := e.key.run(r)
		if err != nil {
			return ev, err
		}
		ev.Key = fmt.Sprint(k)
	}
	payload := r.Payload
	if e.data != nil {
		var err error
		if payload, err = e.data.run(r); err != nil {
			return ev, err
		}
	}
	data, err := json.Marshal(payload)
	if err != nil {
		return ev, fmt.Errorf("emit: encode data: %w", err)
	}
	ev.Data = data
	return ev, nil
}

func (e *emitter) emit(_ context.Context, r Record) error {
	ev, err := e.event(r)
	if err == nil {
		_, err = e.j.Append(e.spec.Stream, ev)
	}
	if err != nil {
		err = fmt.Errorf("emit to %s: %w", e.spec.Stream, err)
		if errors.Is(err, eventlog.ErrInvalidEvent) || errors.Is(err, eventlog.ErrEventTooLarge) {
			// The same record would be refused again: retrying cannot help.
			return consumer.Permanent(err)
		}
		return err
	}
	return nil
}

// Deliver makes an emitter a Sink.
func (e *emitter) Deliver(ctx context.Context, d Delivery) error {
	return e.emit(ctx, d.rec)
}

// EmitSink is a sink that appends a derived event for each delivery, as
// the Emit step does.
func EmitSink(spec EmitSpec) Sink { return emitSink{spec} }

// emitSink is compiled into an emitter by Runtime.Add, which knows the
// journal and the flow.
type emitSink struct{ spec EmitSpec }

func (s emitSink) Deliver(context.Context, Delivery) error {
	return errors.New("flowrt/runtime: EmitSink used outside a flow")
}
