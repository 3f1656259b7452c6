package server

import (
	"net/http"
	"time"

	"github.com/flowrt/flowrt/runtime"
	"github.com/flowrt/flowrt/supervisor"
)

// Health is the answer of /healthz and /readyz.
type Health struct {
	Status string       `json:"status"` // "ok" or "unhealthy"; "ready" or "not ready"
	Run    string       `json:"run,omitempty"`
	State  string       `json:"state"` // the runtime's state, such as "running"
	Reason string       `json:"reason,omitempty"`
	Flows  []FlowHealth `json:"flows,omitempty"`
}

// FlowHealth is one flow's lifecycle in a Health answer.
type FlowHealth struct {
	Name      string `json:"name"`
	State     string `json:"state"` // idle, running, backing_off, failed, stopped
	Restarts  int    `json:"restarts"`
	LastError string `json:"last_error,omitempty"`
}

func health(st supervisor.Status, status string) Health {
	h := Health{Status: status, Run: st.Run, State: st.State.String(), Reason: st.Reason}
	for _, c := range st.Children {
		h.Flows = append(h.Flows, FlowHealth{Name: c.Name, State: c.State.String(), Restarts: c.Restarts, LastError: c.LastError})
	}
	return h
}

// healthz answers 200 while the runtime has not failed and no flow has
// given up, 503 otherwise.
func (a *api) healthz(w http.ResponseWriter, _ *http.Request) {
	st := a.rt.Status()
	if st.Healthy() {
		writeJSON(w, http.StatusOK, health(st, "ok"))
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, health(st, "unhealthy"))
}

// readyz answers 200 while the runtime is running, 503 otherwise.
func (a *api) readyz(w http.ResponseWriter, _ *http.Request) {
	st := a.rt.Status()
	if st.Ready() {
		writeJSON(w, http.StatusOK, health(st, "ready"))
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, health(st, "not ready"))
}

// Status is the answer of /v1/status.
type Status struct {
	Run     string         `json:"run"`
	State   string         `json:"state"`
	Reason  string         `json:"reason,omitempty"`
	Flows   []FlowStatus   `json:"flows"`
	Streams []StreamStatus `json:"streams"`
}

// FlowStatus is one flow in a Status: its lifecycle state and its
// counters (runtime.FlowStats) since the runtime started.
type FlowStatus struct {
	Name         string `json:"name"`
	Stream       string `json:"stream"`
	State        string `json:"state"`
	Matched      uint64 `json:"matched"`
	Processed    uint64 `json:"processed"`
	Filtered     uint64 `json:"filtered"`
	Failed       uint64 `json:"failed"`
	Retried      uint64 `json:"retried"`
	DeadLettered uint64 `json:"dead_lettered"`
	Committed    uint64 `json:"committed"`
	Last         uint64 `json:"last"`
	Lag          uint64 `json:"lag"`
	InFlight     int64  `json:"in_flight"`
	Restarts     int    `json:"restarts"`
	LastError    string `json:"last_error,omitempty"`
}

// StreamStatus is one stream in a Status.
type StreamStatus struct {
	Name     string    `json:"name"`
	First    uint64    `json:"first"`
	Last     uint64    `json:"last"`
	Count    uint64    `json:"count"`
	Bytes    uint64    `json:"bytes"`
	LastTime time.Time `json:"last_time,omitzero"`
}

// status answers the runtime's state, every flow's and every stream's.
func (a *api) status(w http.ResponseWriter, r *http.Request) {
	st := a.rt.Status()
	children := make(map[string]supervisor.ChildStatus, len(st.Children))
	for _, c := range st.Children {
		children[c.Name] = c
	}
	out := Status{Run: st.Run, State: st.State.String(), Reason: st.Reason, Flows: []FlowStatus{}, Streams: []StreamStatus{}}
	for _, s := range a.rt.Stats() {
		c := children[s.Flow] // the zero ChildStatus, idle, before Start
		out.Flows = append(out.Flows, FlowStatus{
			Name: s.Flow, Stream: s.Stream, State: c.State.String(),
			Matched: s.Matched, Processed: s.Processed, Filtered: s.Filtered, Failed: s.Failed,
			Retried: s.Retried, DeadLettered: s.DeadLettered, Committed: s.Committed,
			Last: s.Last, Lag: s.Lag, InFlight: s.InFlight, Restarts: c.Restarts, LastError: c.LastError,
		})
	}
	infos, err := a.log.Streams()
	if err != nil {
		a.fail(w, r, "list streams", err)
		return
	}
	for _, si := range infos {
		out.Streams = append(out.Streams, StreamStatus{Name: si.Name, First: si.First, Last: si.Last, Count: si.Count, Bytes: si.Bytes, LastTime: si.LastTime.UTC()})
	}
	writeJSON(w, http.StatusOK, out)
}

// topology answers runtime.TopologyOf the runtime's flows.
func (a *api) topology(w http.ResponseWriter, _ *http.Request) {
	t := runtime.TopologyOf(a.rt.Flows())
	if t.Streams == nil {
		t.Streams = []string{}
	}
	if t.Flows == nil {
		t.Flows = []runtime.TopologyFlow{}
	}
	writeJSON(w, http.StatusOK, t)
}
