package crashdaemon_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/server"
)

const (
	streamName   = "events" // the stream the producers write and the flow reads
	maxPostBatch = 16       // events in one POST, at most
	maxAppendRun = 8        // events in one `flowrt append`, at most
	cmdTimeout   = time.Minute
)

// eventTypes are the types the producers send: the flow's trigger,
// "order.*", matches two of them.
var eventTypes = []string{"order.created", "order.paid", "audit.note"}

// matched reports whether the flow's trigger matches an event type.
func matched(typ string) bool { return strings.HasPrefix(typ, "order.") }

// Channels an event is sent by.
const (
	viaHTTP   = "http"   // POST /v1/streams/events/events
	viaAppend = "append" // flowrt append, through the daemon
)

// sentEvent is an event a producer sent, acknowledged or not. Its ID is
// known before it is sent: both channels derive it from an idempotency
// key, so a batch cut by a kill can be sent again.
type sentEvent struct {
	id    string
	typ   string
	key   string // unique: the flow's map step copies it into the sink line
	n     int    // its position in its batch
	batch string
	acked int // the cycle whose daemon acknowledged it; 0 for none yet
}

// eventData is the data of every event sent; the map step turns it into
// sinkData.
type eventData struct {
	N     int    `json:"n"`
	Batch string `json:"batch"`
}

// batch is one POST or one `flowrt append` run.
type batch struct {
	name   string // the POST's Idempotency-Key; the idempotency keys' prefix of an append
	via    string
	events []*sentEvent
	body   []byte
}

// newBatch makes a batch of n events sent via via, named name.
func newBatch(rng *rand.Rand, via, name string, n int) (*batch, error) {
	b := &batch{name: name, via: via}
	var body bytes.Buffer
	for i := range n {
		ev := &sentEvent{typ: eventTypes[rng.IntN(len(eventTypes))], key: name + "/" + strconv.Itoa(i), n: i, batch: name}
		data := eventData{N: i, Batch: name}
		var line any
		if via == viaHTTP {
			ev.id = eventlog.DeriveID(name, strconv.Itoa(i)).String()
			line = struct {
				Type string    `json:"type"`
				Key  string    `json:"key"`
				Data eventData `json:"data"`
			}{ev.typ, ev.key, data}
		} else {
			ev.id = eventlog.DeriveID(streamName, ev.key).String()
			line = struct {
				Type    string    `json:"type"`
				Key     string    `json:"key"`
				IdemKey string    `json:"idempotency_key"`
				Data    eventData `json:"data"`
			}{ev.typ, ev.key, ev.key, data}
		}
		enc, err := json.Marshal(line)
		if err != nil {
			return nil, err
		}
		body.Write(enc)
		body.WriteByte('\n')
		b.events = append(b.events, ev)
	}
	b.body = body.Bytes()
	return b, nil
}

// ledger is every event sent, and the batches cut by a kill that are to
// be sent again. It is safe for concurrent use.
type ledger struct {
	mu      sync.Mutex
	byID    map[string]*sentEvent
	retry   map[string][]*batch // via -> batches to send again
	batches int                 // batches made, for unique names
	stats   ledgerStats
}

// ledgerStats counts what the producers saw.
type ledgerStats struct {
	posts, appends         int // acknowledged batches
	cut                    int // batches cut by a kill
	retried                int // cut batches acknowledged by a later daemon
	retriedDuplicates      int // events of those the first attempt had appended
	ackedHTTP, ackedAppend int // events acknowledged
}

func newLedger() *ledger {
	return &ledger{byID: map[string]*sentEvent{}, retry: map[string][]*batch{}}
}

// next returns a batch to send via via: one cut by an earlier kill, else
// a new one of 1 to max events.
func (l *ledger) next(rng *rand.Rand, via string, cycle, max int) (b *batch, retried bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if q := l.retry[via]; len(q) > 0 {
		l.retry[via] = q[1:]
		return q[0], true, nil
	}
	l.batches++
	b, err = newBatch(rng, via, fmt.Sprintf("c%d-%s-%d", cycle, via, l.batches), 1+rng.IntN(max))
	if err != nil {
		return nil, false, err
	}
	for _, ev := range b.events {
		if l.byID[ev.id] != nil {
			return nil, false, fmt.Errorf("two events with ID %s", ev.id)
		}
		l.byID[ev.id] = ev
	}
	return b, false, nil
}

// acked records that the daemon of cycle acknowledged b, with the
// duplicates it reported.
func (l *ledger) acked(b *batch, cycle int, retried bool, duplicates int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range b.events {
		ev.acked = cycle
	}
	if b.via == viaHTTP {
		l.stats.posts++
		l.stats.ackedHTTP += len(b.events)
	} else {
		l.stats.appends++
		l.stats.ackedAppend += len(b.events)
	}
	if retried {
		l.stats.retried++
		l.stats.retriedDuplicates += duplicates
	}
}

// cut records that a kill cut b: it is sent again in the next cycle.
func (l *ledger) cut(b *batch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats.cut++
	l.retry[b.via] = append(l.retry[b.via], b)
}

// cycleRun is what the producers of one cycle share.
type cycleRun struct {
	cycle    int
	bin, db  string
	base     string // the daemon's http://host:port
	client   *http.Client
	ledger   *ledger
	killed   atomic.Bool   // set just before the SIGKILL: failures after it are the kill's
	stopping chan struct{} // closed to stop the producers
	firstAck chan struct{} // closed once the daemon acknowledged a batch
	ackOnce  sync.Once

	mu  sync.Mutex
	err error // the first failure the kill does not explain
}

// fail records a failure the kill does not explain.
func (c *cycleRun) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// failure returns the first failure recorded.
func (c *cycleRun) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *cycleRun) stopped() bool {
	select {
	case <-c.stopping:
		return true
	default:
		return false
	}
}

// produce sends batches via via until stopping is closed, the kill cuts
// one, or a failure.
func (c *cycleRun) produce(rng *rand.Rand, via string) {
	for !c.stopped() {
		max, send := maxPostBatch, c.post
		if via == viaAppend {
			max, send = maxAppendRun, c.appendRun
		}
		b, retried, err := c.ledger.next(rng, via, c.cycle, max)
		if err != nil {
			c.fail(err)
			return
		}
		killed := c.killed.Load() // before sending: a failure then is the kill's
		dups, err := send(b)
		var refused *refusedError
		switch {
		case err == nil:
			c.ledger.acked(b, c.cycle, retried, dups)
			c.ackOnce.Do(func() { close(c.firstAck) })
		case errors.As(err, &refused) || !c.killed.Load():
			// Refused by a live daemon, or failed before the kill.
			c.fail(fmt.Errorf("batch %s (%s, retried %v, daemon killed %v): %w", b.name, via, retried, killed, err))
			return
		default:
			// The kill cut it: the next daemon gets it again.
			c.ledger.cut(b)
			return
		}
	}
}

// refusedError is an answer of the daemon other than a success: the kill
// does not explain it.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// post POSTs b to the daemon's ingest endpoint with b.name as the
// Idempotency-Key, and checks the answer: one result per event, with the
// ID derived from the key. It returns how many were duplicates.
func (c *cycleRun) post(b *batch) (int, error) {
	req, err := http.NewRequest(http.MethodPost, c.base+"/v1/streams/"+streamName+"/events", bytes.NewReader(b.body))
	if err != nil {
		return 0, &refusedError{err.Error()}
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Idempotency-Key", b.name)
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, &refusedError{fmt.Sprintf("POST: %s: %s", resp.Status, body)}
	}
	var answer server.IngestAnswer
	if err := json.Unmarshal(body, &answer); err != nil {
		return 0, &refusedError{fmt.Sprintf("POST: 200 with %q: %v", body, err)}
	}
	ids := make([]string, len(answer.Results))
	dups := 0
	for i, r := range answer.Results {
		ids[i] = r.ID
		if r.Duplicate {
			dups++
		}
	}
	if err := sameIDs(b, ids); err != nil {
		return 0, &refusedError{fmt.Sprintf("POST answered %s: %v", body, err)}
	}
	return dups, nil
}

// appendRun runs `flowrt append --db DB --json` with b on stdin. The
// journal is locked by the daemon, so append goes through it. Exit status
// 0 acknowledges the events; the results must carry their derived IDs.
func (c *cycleRun) appendRun(b *batch) (int, error) {
	r := flowrtCmd(c.bin, cmdTimeout, b.body, "append", "--db", c.db, "--stream", streamName, "--json")
	if m := problem(string(r.stderr)); m != "" {
		return 0, &refusedError{fmt.Sprintf("%q on stderr: %s", m, r)}
	}
	if !r.ok() {
		return 0, errors.New(r.String())
	}
	var ids []string
	dups := 0
	sc := bufio.NewScanner(bytes.NewReader(r.stdout))
	for sc.Scan() {
		var res struct {
			Line      int    `json:"line"`
			Stream    string `json:"stream"`
			ID        string `json:"id"`
			Seq       uint64 `json:"seq"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			return 0, &refusedError{fmt.Sprintf("append --json printed %q: %v", sc.Bytes(), err)}
		}
		if res.Line != len(ids)+1 || res.Stream != streamName || res.Seq == 0 {
			return 0, &refusedError{fmt.Sprintf("append --json printed %q for line %d", sc.Bytes(), len(ids)+1)}
		}
		ids = append(ids, res.ID)
		if res.Duplicate {
			dups++
		}
	}
	if err := sameIDs(b, ids); err != nil {
		return 0, &refusedError{fmt.Sprintf("%v: %s", err, r)}
	}
	return dups, nil
}

// sameIDs checks that ids are b's events' IDs, in order.
func sameIDs(b *batch, ids []string) error {
	if len(ids) != len(b.events) {
		return fmt.Errorf("%d results for %d events", len(ids), len(b.events))
	}
	for i, ev := range b.events {
		if ids[i] != ev.id {
			return fmt.Errorf("event %d: ID %s, want %s (derived from its idempotency key)", i, ids[i], ev.id)
		}
	}
	return nil
}
