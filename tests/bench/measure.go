package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// latencies records the duration of every blocking unit (one append, or one
// batch) of a timed phase. Every sample is kept, so percentiles are exact:
// the largest run keeps 64,000 samples (512 KB).
//
// A latencies is not safe for concurrent use: each goroutine records into its
// own and the driver merges them when the goroutines are done.
type latencies struct {
	samples []time.Duration
}

func newLatencies(capacity int) *latencies {
	return &latencies{samples: make([]time.Duration, 0, capacity)}
}

// record adds one sample.
func (l *latencies) record(d time.Duration) { l.samples = append(l.samples, d) }

// merge adds every sample of others.
func (l *latencies) merge(others ...*latencies) {
	for _, o := range others {
		l.samples = append(l.samples, o.samples...)
	}
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100), or 0
// with no samples. It sorts the samples on first use.
func (l *latencies) percentile(p float64) time.Duration {
	n := len(l.samples)
	if n == 0 {
		return 0
	}
	if !slices.IsSorted(l.samples) {
		slices.Sort(l.samples)
	}
	rank := int(math.Ceil(p/100*float64(n))) - 1
	return l.samples[min(max(rank, 0), n-1)]
}

// ioCounters is this process's /proc/self/io: write_bytes counts the bytes the
// process caused to be sent to storage, charged when it dirties a page (a
// file data page, or a metadata block such as an inode), in whole pages.
// Every goroutine of the process is counted, the embedded NATS server's too.
type ioCounters struct {
	writeBytes int64
	// cancelledWriteBytes counts dirty pages that were truncated or deleted
	// before reaching the disk.
	cancelledWriteBytes int64
}

// readIO reads /proc/self/io.
func readIO() (ioCounters, error) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return ioCounters{}, fmt.Errorf("bench: read io counters: %w", err)
	}
	var c ioCounters
	found := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, value, ok := bytes.Cut(sc.Bytes(), []byte(": "))
		if !ok {
			continue
		}
		var dst *int64
		switch string(name) {
		case "write_bytes":
			dst, found = &c.writeBytes, true
		case "cancelled_write_bytes":
			dst = &c.cancelledWriteBytes
		default:
			continue
		}
		if *dst, err = strconv.ParseInt(string(value), 10, 64); err != nil {
			return ioCounters{}, fmt.Errorf("bench: parse /proc/self/io %s: %w", name, err)
		}
	}
	if !found {
		return ioCounters{}, errors.New("bench: /proc/self/io has no write_bytes (kernel without task IO accounting?)")
	}
	return c, nil
}

// dirSize returns the sum of the apparent sizes of the regular files under
// dir: what the variant stores, including preallocated space it has not
// filled.
// timedRun is what one variant's timed phase measured.
type timedRun struct {
	elapsed    time.Duration
	writeBytes float64 // bytes the process wrote during the run (/proc/self/io)
	dirBytes   int64   // the store's directory once it is closed
}

// timeRun times run between two reads of the process's I/O counters, then
// closes the store and sizes its directory, so that writes deferred to
// Close count in the file size but not in the run's writes.
func timeRun(dir string, run, closeStore func() error) (timedRun, error) {
	var tr timedRun
	before, err := readIO()
	if err != nil {
		return tr, err
	}
	start := time.Now()
	err = run()
	tr.elapsed = time.Since(start)
	if err != nil {
		return tr, err
	}
	after, err := readIO()
	if err != nil {
		return tr, err
	}
	tr.writeBytes = float64(after.writeBytes - before.writeBytes)
	if err := closeStore(); err != nil {
		return tr, fmt.Errorf("close: %w", err)
	}
	tr.dirBytes, err = dirSize(dir)
	return tr, err
}

func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bench: size of %s: %w", dir, err)
	}
	return total, nil
}

// fsKind names the file system holding dir, so a run on tmpfs, where fsync
// costs nothing, is visible in the report.
func fsKind(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs"
	case 0x794c7630:
		return "overlayfs"
	default:
		return fmt.Sprintf("fs magic %#x", st.Type)
	}
}
