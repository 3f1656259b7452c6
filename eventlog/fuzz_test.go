//go:build unix

package eventlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

// fuzzRecordEvents are the events whose sealed records seed FuzzDecodeRecord.
func fuzzRecordEvents() []Event {
	id := ulid.MustParse("01HZX3K9Q8W5V7T2N4M6P8R0S2")
	return []Event{
		{ID: id, Type: "order.created", Key: "order-1", Headers: map[string]string{"a": "1", "trace": "x"}, Data: []byte(`{"total":42}`)},
		{ID: id, Type: "t"},
		{ID: id, Type: "t", Data: []byte{}},
		{ID: id, Type: "a.b-c_d", Key: "ключ", Data: bytes.Repeat([]byte{0xff}, 300)},
		{ID: id, Type: strings.Repeat("x", MaxTypeLen), Key: strings.Repeat("k", 40), Headers: map[string]string{"": "", "z": strings.Repeat("v", 70000)}},
		{ID: id, Type: "h", Headers: map[string]string{"1": "", "2": "", "3": "", "4": "", "5": "", "6": "", "7": "", "8": "", "9": "", "10": "", "11": "", "12": "", "13": "", "14": "", "15": "", "16": ""}},
	}
}

// fuzzSeal encodes and seals e under seq at t and returns the fuzz input:
// seq as 8 big-endian bytes, then the record.
func fuzzSeal(e *Event, seq uint64, t time.Time) []byte {
	v := encodeRecord(e)
	sealRecord(v, seq, t)
	return append(binary.BigEndian.AppendUint64(nil, seq), v...)
}

// FuzzDecodeRecord splits its input like nats' FuzzParser: the first 8
// bytes are the sequence the record is stored under, the rest the record.
// Decoding must never panic, and a record that decodes must encode back to
// the same bytes. A second pass reseals the header so that the checksum
// holds and the fuzzer reaches the msgpack payload decoder.
func FuzzDecodeRecord(f *testing.F) {
	times := []time.Time{time.Unix(0, 0), time.Unix(1700000000, 123456789), time.Unix(0, -1)}
	for i, e := range fuzzRecordEvents() {
		f.Add(fuzzSeal(&e, uint64(i+1), times[i%len(times)]))
		f.Add(fuzzSeal(&e, 1<<63+uint64(i), times[(i+1)%len(times)]))
	}
	f.Add([]byte{})
	f.Add(make([]byte, 8+recordHeaderSize))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 8 {
			return
		}
		seq, v := binary.BigEndian.Uint64(in), in[8:]
		d := newDecoder()

		var e Event
		if err := d.decode(seq, v, &e); err == nil {
			if e.Seq != seq || !e.Time.Equal(recordTime(v)) {
				t.Fatalf("decoded seq %d time %v from seq %d time %v", e.Seq, e.Time, seq, recordTime(v))
			}
			if got := fuzzReseal(&e, seq); !bytes.Equal(got, v) {
				t.Fatalf("round trip changed the record:\n in  %x\n out %x", v, got)
			}
		} else if checkRecord(seq, v) == nil && errors.Is(err, errChecksum) {
			t.Fatalf("checkRecord passes but decode reports a checksum error: %v", err)
		}

		if len(v) < recordHeaderSize {
			return
		}
		w := bytes.Clone(v)
		w[offVersion], w[offKind] = recordVersion, byte(KindEvent)
		binary.BigEndian.PutUint32(w[offCRC:], recordCRC(seq, w))
		var e2 Event
		if err := d.decode(seq, w, &e2); err != nil {
			return
		}
		// msgpack has several encodings of one value (str8 or str16 for a
		// short string, an empty map or nil), and the decoder accepts them
		// all, so only the decoded value must survive a round trip, and the
		// encoder's own output must be a fixed point.
		re := fuzzReseal(&e2, seq)
		var e3 Event
		if err := d.decode(seq, re, &e3); err != nil {
			t.Fatalf("re-encoded record does not decode: %v\n in %x\n re %x", err, w, re)
		}
		e2.Seq, e3.Seq = 0, 0
		if !reflect.DeepEqual(e2, e3) {
			t.Fatalf("round trip changed the event:\n %#v\n %#v", e2, e3)
		}
		if again := fuzzReseal(&e3, seq); !bytes.Equal(again, re) {
			t.Fatalf("encoding is not canonical:\n %x\n %x", re, again)
		}
	})
}

// fuzzReseal encodes e with its time and seals it under seq.
func fuzzReseal(e *Event, seq uint64) []byte {
	v := encodeRecord(e)
	sealRecord(v, seq, e.Time)
	return v
}

// openSentinels are the errors Open may return for bad bytes.
var openSentinels = []error{ErrNotJournal, ErrTruncated, ErrCorrupt, ErrVersion}

func isOpenSentinel(err error) bool {
	for _, s := range openSentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// fuzzJournal builds a small journal with two streams, a consumer offset,
// a namespace and free pages, and returns its bytes.
func fuzzJournal(tb testing.TB) []byte {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "seed.db")
	l, err := Open(path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range 40 {
		stream := []string{"orders", "$system"}[i%2]
		e := Event{Type: "seed.event", Key: fmt.Sprint(i % 3), Headers: map[string]string{"i": fmt.Sprint(i)}, Data: bytes.Repeat([]byte{byte(i)}, 100+i*10)}
		if i%5 == 0 {
			e.ID = DeriveID("seed", fmt.Sprint(i))
		}
		if err := l.Update(func(tx *Tx) error { _, err := tx.Append(stream, e); return err }); err != nil {
			tb.Fatal(err)
		}
	}
	err = l.Update(func(tx *Tx) error {
		if err := tx.SetOffset("orders", "billing", 5); err != nil {
			return err
		}
		b, err := tx.Namespace("consumer")
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := l.Truncate("orders", 3, Force); err != nil {
		tb.Fatal(err)
	}
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// FuzzOpen writes its input to a file and opens it read-only and
// read-write. No panic may escape; a refusal must be one of the typed
// sentinels and leave the file as it was, unlocked; a journal that opens
// must read, check, take an append (read-write) and close, every error
// typed.
//
// The fuzzing engine discards its workers' stderr, so a crash that recover
// cannot contain leaves no trace; set FLOWRT_FUZZ_CRASH_LOG to a file to
// have the runtime append its crash report there.
func FuzzOpen(f *testing.F) {
	if p := os.Getenv("FLOWRT_FUZZ_CRASH_LOG"); p != "" {
		out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			f.Fatal(err)
		}
		if err := debug.SetCrashOutput(out, debug.CrashOptions{}); err != nil {
			f.Fatal(err)
		}
		out.Close()
	}
	raw := fuzzJournal(f)
	ps := os.Getpagesize()
	f.Add(raw)
	f.Add([]byte{})
	f.Add([]byte(`{"not":"a journal"}`))
	f.Add(raw[:ps+100])
	f.Add(raw[:3*ps])
	f.Add(raw[:len(raw)-ps])
	// A byte flipped in the middle of every page but the meta pages.
	for off := 2*ps + ps/2; off < len(raw); off += ps {
		m := bytes.Clone(raw)
		m[off] ^= 0xff
		f.Add(m)
	}
	// Page headers: id, flags, count, overflow of every page.
	for _, field := range []int{0, 8, 10, 12} {
		m := bytes.Clone(raw)
		for off := 2 * ps; off < len(raw); off += ps {
			m[off+field] ^= 0x81
		}
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if why := boltWalkHazard(data); why != "" {
			t.Skipf("known crasher class, see TestKnownCrashers: %s", why)
		}
		path := filepath.Join(t.TempDir(), "j.db")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, ro := range []bool{true, false} {
			fuzzOpenOnce(t, path, data, ro)
		}
	})
}

func fuzzOpenOnce(t *testing.T, path string, data []byte, ro bool) {
	mode := map[bool]string{true: "read-only", false: "read-write"}[ro]
	l, err := Open(path, &Options{ReadOnly: ro, LockTimeout: 50 * time.Millisecond})
	if err != nil {
		if l != nil {
			t.Fatalf("%s Open returned a Log with error %v", mode, err)
		}
		if !isOpenSentinel(err) {
			t.Fatalf("%s Open: untyped error %v", mode, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
			t.Fatalf("%s Open refused the file (%v) but changed it", mode, err)
		}
		fuzzRequireUnlocked(t, path, mode+" Open refused")
		return
	}
	typed := func(what string, err error) {
		t.Helper()
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s %s: untyped error %v", mode, what, err)
		}
	}
	streams, err := l.Streams()
	typed("Streams", err)
	for _, si := range streams {
		for _, err := range l.Scan(si.Name, 0, 0) {
			typed("Scan", err)
		}
		_, err := l.Info(si.Name)
		typed("Info", err)
	}
	_, err = l.Consumers("")
	typed("Consumers", err)
	_, err = l.Check(context.Background())
	typed("Check", err)
	if !ro {
		res, err := l.Append("fuzz", Event{Type: "fuzz.probe", Data: []byte("probe")})
		typed("Append", err)
		if err == nil {
			e, err := l.Get("fuzz", res[0].Seq)
			typed("Get after Append", err)
			if err == nil && string(e.Data) != "probe" {
				t.Fatalf("appended %q, read back %q", "probe", e.Data)
			}
		}
	}
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s Close hung", mode)
	}
	if ro {
		if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
			t.Fatalf("read-only Open changed the file")
		}
	}
	fuzzRequireUnlocked(t, path, mode+" Close")
}

func fuzzRequireUnlocked(t *testing.T, path, after string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("after %s the journal is still locked: %v", after, err)
	}
}

// boltWalkHazard reads the page tree of a bbolt file from its bytes, without
// mapping it, and says why walking it would end this process, or "" when it
// would not. Two classes, found by FuzzOpen, are beyond what Open's
// precheck, recover and debug.SetPanicOnFault can contain:
//
//   - bbolt follows child page ids without a depth bound and treats every
//     page that is not a leaf as a branch, so a cycle, or a bucket root or
//     child that names a meta or freelist page, grows a cursor's stack until
//     the runtime aborts with "out of memory" (or overflows the stack).
//   - bbolt's Check reads every branch key in a goroutine of its own, so a
//     branch key that runs beyond the file is a fatal fault there. Whether
//     it faults depends on what else is mapped past the file.
//   - in a write transaction bbolt copies an inline bucket's value to the
//     heap and builds key pointers from the inline page's element offsets:
//     an offset past the value gives the garbage collector a pointer into
//     another object ("found bad pointer in Go heap"), and under -race the
//     race detector faults reading it. Both end the process.
//   - bbolt trusts a page's overflow count: Check records every page it
//     claims, and freeing the page on a rewrite frees each, so a count of
//     billions runs until the runtime aborts with "out of memory".
//
// Leaf keys and values beyond the file are read first by touchPages, in a
// goroutine where the fault is contained, so they are not hazards here.
func boltWalkHazard(data []byte) string {
	le := binary.LittleEndian
	meta := func(off int) (root, pgid uint64, ps int, ok bool) {
		if off+16+64 > len(data) {
			return 0, 0, 0, false
		}
		m := data[off+16 : off+16+64]
		if le.Uint32(m) != boltMagic || le.Uint32(m[4:]) != boltVersion {
			return 0, 0, 0, false
		}
		h := fnv.New64a()
		h.Write(m[:56])
		if h.Sum64() != le.Uint64(m[56:]) {
			return 0, 0, 0, false
		}
		return le.Uint64(m[16:]), le.Uint64(m[40:]), int(le.Uint32(m[8:])), true
	}
	root, hwm, ps, ok := meta(0)
	if !ok {
		ps = os.Getpagesize()
	}
	if r1, hwm1, ps1, ok1 := meta(ps); ok1 {
		txid := func(off int) uint64 { return le.Uint64(data[off+16+48:]) }
		if !ok || txid(ps) > txid(0) {
			root, hwm, ps, ok = r1, hwm1, ps1, true
		}
	}
	if !ok || ps < boltMinPageSize {
		return "" // Open refuses it
	}
	budget := 1 << 16
	var page func(id uint64, path []uint64) string
	var leafBuckets func(off, count, end int, path []uint64) string
	leafBuckets = func(off, count, end int, path []uint64) string {
		for e := range count {
			el := off + 16 + 16*e
			if el+16 > end || le.Uint32(data[el:])&1 == 0 {
				continue
			}
			v := el + int(le.Uint32(data[el+4:])) + int(le.Uint32(data[el+8:]))
			if v < 0 || v+16 > len(data) {
				continue
			}
			if r := le.Uint64(data[v:]); r != 0 {
				if why := page(r, path); why != "" {
					return why
				}
			} else if in := v + 16; in+16 <= len(data) { // an inline bucket: its page is in the value
				count := int(le.Uint16(data[in+10:]))
				// A write transaction copies the value to the heap and
				// follows the inline page's element offsets from there.
				vend := v + int(le.Uint32(data[el+12:]))
				for e := range count {
					iel := in + 16 + 16*e
					if iel+16 > vend {
						return fmt.Sprintf("inline bucket in page %d: element %d lies beyond its value", path[len(path)-1], e)
					}
					end := iel + int(le.Uint32(data[iel+4:])) + int(le.Uint32(data[iel+8:])) + int(le.Uint32(data[iel+12:]))
					if le.Uint16(data[in+8:])&0x02 == 0 {
						end = iel + int(le.Uint32(data[iel:])) + int(le.Uint32(data[iel+4:])) // read as a branch
					}
					if end > vend {
						return fmt.Sprintf("inline bucket in page %d: element %d runs %d bytes beyond its value", path[len(path)-1], e, end-vend)
					}
				}
				if le.Uint16(data[in+8:])&0x02 != 0 {
					if why := leafBuckets(in, count, len(data), path); why != "" {
						return why
					}
					continue
				}
				// Read as a branch, its child 0 is itself; any other
				// child is a panic bbolt raises, which is contained.
				for e := range max(count, 1) {
					if el := in + 16 + 16*e; el+16 <= len(data) && le.Uint64(data[el+8:]) == 0 {
						return fmt.Sprintf("inline bucket page in page %d is read as a branch whose child is itself", path[len(path)-1])
					}
				}
			}
		}
		return ""
	}
	page = func(id uint64, path []uint64) string {
		if budget--; budget < 0 {
			return "more than 65536 page visits: the tree shares or loops"
		}
		if len(path) > 64 {
			return "page tree deeper than 64 levels"
		}
		for _, p := range path {
			if p == id {
				return fmt.Sprintf("page %d is its own ancestor (path %v)", id, path)
			}
		}
		if id > uint64(len(data)/ps) {
			return ""
		}
		off := int(id) * ps
		if off+16 > len(data) {
			return ""
		}
		flags, count := le.Uint16(data[off+8:]), int(le.Uint16(data[off+10:]))
		overflow := uint64(le.Uint32(data[off+12:]))
		if id+overflow >= hwm {
			return fmt.Sprintf("page %d claims %d overflow pages, past the high water mark %d", id, overflow, hwm)
		}
		end := min(len(data), off+(1+int(overflow))*ps)
		path = append(path[:len(path):len(path)], id)
		if flags&0x02 != 0 {
			return leafBuckets(off, count, end, path)
		}
		// Not a leaf: bbolt reads it as a branch, and descends to element
		// 0 even when the count is 0.
		for e := range max(count, 1) {
			el := off + 16 + 16*e
			if el+16 > len(data) {
				return ""
			}
			if k := el + int(le.Uint32(data[el:])) + int(le.Uint32(data[el+4:])); k > len(data) {
				return fmt.Sprintf("branch page %d element %d: key ends at byte %d, beyond the file (%d bytes)", id, e, k, len(data))
			}
			if why := page(le.Uint64(data[el+8:]), path); why != "" {
				return why
			}
		}
		return ""
	}
	return page(root, nil)
}

const knownCrashersEnv = "FLOWRT_KNOWN_CRASHERS"

// knownCrasherNotes says, for each file of testdata/crashers, how it ended
// the process when FuzzOpen found it, and what still can.
var knownCrasherNotes = map[string]string{
	"inline-bucket-page-loops.db": "an inline bucket's page is not marked leaf, so bbolt's cursor reads it as a branch " +
		"whose child 0 is the inline page itself and descends forever: fatal out of memory in Streams (any read of the bucket)",
	"branch-key-beyond-file.db": "a branch element's key size runs 160 KiB past the file: bbolt's Check reads it in its own " +
		"goroutine (verifyKeyOrder), a fatal SIGSEGV when nothing else is mapped there (about 1 run in 7)",
	"inline-bucket-element-beyond-value.db": "an element of an inline bucket's page claims a key past the bucket's value: " +
		"a commit that touches the bucket copies the value to the heap and follows the offset out of it; the garbage collector " +
		"aborts with \"found bad pointer in Go heap\" (and -race faults). Reads are safe: they point into the memory map. " +
		"TestCorruptionTable/heads/key-size-beyond-file builds the same damage and skips its append for this reason",
	"page-overflow-beyond-file.db": "a branch page claims 4e9 overflow pages: bbolt's Check records each (fatal out of memory). " +
		"Check now bounds the claims first (TestCorruptionTable/page/overflow-count-beyond-file) and FuzzOpen's probes pass; " +
		"a commit that frees such a page still loops over every claimed page unless it meets one already free",
}

// TestKnownCrashers keeps the inputs of testdata/crashers: journals that
// crash the process (see boltWalkHazard) and so cannot sit in the fuzz
// corpus, where every `go test` would run them. It checks that FuzzOpen's
// guard still recognises each, and, with FLOWRT_KNOWN_CRASHERS=1, runs
// FuzzOpen's checks on each in a child process limited to 4 GiB of address
// space, expecting the behaviour the package promises: typed errors and no
// crash. That run fails until the crashers are fixed.
func TestKnownCrashers(t *testing.T) {
	if p := os.Getenv(knownCrashersEnv + "_CHILD"); p != "" {
		if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: 4 << 30, Max: 4 << 30}); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "j.db")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, ro := range []bool{true, false} {
			fuzzOpenOnce(t, path, data, ro)
		}
		return
	}
	files, err := filepath.Glob(filepath.Join("testdata", "crashers", "*.db"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no crashers in testdata/crashers")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if why := boltWalkHazard(data); why == "" {
				t.Fatal("FuzzOpen's guard no longer recognises this crasher")
			} else {
				t.Log(why)
			}
			t.Log(knownCrasherNotes[filepath.Base(file)])
			if os.Getenv(knownCrashersEnv) == "" {
				t.Skipf("known crasher: set %s=1 to run it in a child process", knownCrashersEnv)
			}
			abs, err := filepath.Abs(file)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(exe, "-test.run=^TestKnownCrashers$", "-test.count=1")
			cmd.Env = append(os.Environ(), knownCrashersEnv+"_CHILD="+abs)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child process: %v\n%s", err, tail(out, 3000))
			}
		})
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
