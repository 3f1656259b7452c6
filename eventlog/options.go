package eventlog

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"time"
)

// Options configures a Log. A nil *Options, and every zero field, means the
// default given in the field's comment. Options are fixed once the Log is
// open.
type Options struct {
	// ReadOnly opens the journal for inspection: nothing on disk changes, a
	// shared lock is taken, and every write returns ErrReadOnly. A missing
	// file is an error instead of being created.
	ReadOnly bool

	// LockTimeout is how long Open waits for another process to release the
	// journal before returning ErrLocked. Default 1s.
	LockTimeout time.Duration

	// MaxEventBytes is the largest encoded event, in bytes, envelope included.
	// Default 1 MiB; at most 256 MiB.
	MaxEventBytes int

	// MaxBatchEvents bounds how many events one group commit holds.
	// Default 8192.
	MaxBatchEvents int

	// MaxBatchBytes bounds the encoded bytes one group commit holds; a
	// single Append larger than this still commits alone. Default 16 MiB.
	MaxBatchBytes int

	// SyncInterval chooses the durability policy. Zero (the default) fsyncs
	// every commit: Append returns only once its events are on disk.
	// A positive interval stops fsyncing commits and fsyncs the file every
	// SyncInterval instead. Appends then survive a process crash but not a
	// power loss or kernel crash: up to SyncInterval of acknowledged events
	// can be lost, and because bbolt's write ordering is no longer enforced
	// the file itself can be damaged (flowrt check reports it).
	SyncInterval time.Duration

	// DedupWindow is how long an event ID is remembered for idempotent
	// append. Zero (the default) remembers every ID as long as its event is
	// retained. With a window, an ID whose event is older than the window is
	// appended again as a new event.
	DedupWindow time.Duration

	// Retention lists per-stream retention policies, enforced every
	// RetentionInterval. A stream absent from the map keeps everything.
	Retention map[string]Retention

	// RetentionInterval is how often Retention is enforced. Default 1m.
	RetentionInterval time.Duration

	// Logger receives the journal's rare operational messages (retention
	// runs, sync failures). Default: discard.
	Logger *slog.Logger

	// OpenFile, when set, opens the database file in place of os.OpenFile.
	// It exists for fault-injection tests.
	OpenFile func(name string, flag int, perm os.FileMode) (*os.File, error)
}

// DefaultOptions returns the defaults as a new value the caller may change.
func DefaultOptions() *Options {
	return &Options{
		LockTimeout:       time.Second,
		MaxEventBytes:     1 << 20,
		MaxBatchEvents:    8192,
		MaxBatchBytes:     16 << 20,
		RetentionInterval: time.Minute,
		Logger:            slog.New(slog.DiscardHandler),
	}
}

// withDefaults returns a copy of o with zero fields set to their defaults.
func (o *Options) withDefaults() Options {
	d := DefaultOptions()
	if o == nil {
		return *d
	}
	c := *o
	c.Retention = maps.Clone(o.Retention) // fixed once open: not the caller's map
	if c.LockTimeout == 0 {
		c.LockTimeout = d.LockTimeout
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = d.MaxEventBytes
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = d.MaxBatchEvents
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = d.MaxBatchBytes
	}
	if c.RetentionInterval == 0 {
		c.RetentionInterval = d.RetentionInterval
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate reports every problem with o at once. Zero fields are valid: they
// mean the default.
func (o *Options) Validate() error {
	if o == nil {
		return nil
	}
	var errs []error
	neg := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative (got %d)", name, v))
		}
	}
	neg("LockTimeout", int64(o.LockTimeout))
	neg("MaxEventBytes", int64(o.MaxEventBytes))
	neg("MaxBatchEvents", int64(o.MaxBatchEvents))
	neg("MaxBatchBytes", int64(o.MaxBatchBytes))
	neg("SyncInterval", int64(o.SyncInterval))
	neg("DedupWindow", int64(o.DedupWindow))
	neg("RetentionInterval", int64(o.RetentionInterval))
	if o.MaxEventBytes > 256<<20 {
		errs = append(errs, fmt.Errorf("MaxEventBytes must be at most 256 MiB (got %d)", o.MaxEventBytes))
	}
	for stream, r := range o.Retention {
		if err := ValidateName(stream); err != nil {
			errs = append(errs, fmt.Errorf("Retention[%q]: %w", stream, err))
		}
		if err := r.validate(); err != nil {
			errs = append(errs, fmt.Errorf("Retention[%q]: %w", stream, err))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
}
