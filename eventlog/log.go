package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Log is an open journal. It is safe for concurrent use by many goroutines.
type Log struct {
	path string
	opts Options
	db   *bolt.DB
	id   ulid.ULID

	reqs  chan *request // to the committer
	stopc chan struct{} // closed by Close: background goroutines stop
	donec chan struct{} // closed when the committer has exited
	bg    sync.WaitGroup

	closeMu sync.RWMutex // held for reading while a request is sent
	closed  bool

	werr atomic.Pointer[error] // sticky write error

	claims claims

	chunkLimit int // largest chunk appends build: chunkBytes of the file's page size

	changedMu sync.Mutex
	changed   chan struct{} // closed and replaced after every commit
}

// Open opens the journal at path, creating it when missing (unless
// opts.ReadOnly). A nil opts means DefaultOptions().
//
// Open refuses, with a typed error and without changing the file, an empty
// or foreign file (ErrNotJournal), a truncated one (ErrTruncated), a damaged
// meta page (ErrCorrupt), a newer format (ErrVersion), and a journal that
// another process holds (ErrLocked, after opts.LockTimeout).
func Open(path string, opts *Options) (*Log, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	o := opts.withDefaults()
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && !o.ReadOnly {
		if err := create(path, &o); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("flowrt/eventlog: open %s: %w", path, err)
	}
	var db *bolt.DB
	for attempt := 0; ; attempt++ {
		if err := precheck(path, &o); err != nil {
			return nil, err
		}
		var err error
		db, err = openBolt(path, &o)
		if errors.Is(err, errReplaced) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	l := &Log{
		path:    path,
		opts:    o,
		db:      db,
		reqs:    make(chan *request, 256),
		stopc:   make(chan struct{}),
		donec:   make(chan struct{}),
		changed: make(chan struct{}),
	}
	l.chunkLimit = chunkBytes(db.Info().PageSize)
	if err := l.view(func(btx *bolt.Tx) (err error) {
		l.id, err = readMeta(btx, path)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	if o.ReadOnly {
		close(l.donec)
		return l, nil
	}
	if err := upgradeFormat(db, path); err != nil {
		db.Close()
		return nil, err
	}
	go l.commitLoop()
	if o.SyncInterval > 0 {
		l.goBackground(l.syncLoop)
	}
	if len(o.Retention) > 0 {
		l.goBackground(l.retentionLoop)
	}
	return l, nil
}

func openBolt(path string, o *Options) (db *bolt.DB, err error) {
	// bbolt keeps the file it opened, and the lock on it, when it panics:
	// note the file, and release both if it does. Its memory map is lost.
	var file *os.File
	openFile := o.OpenFile
	if openFile == nil {
		openFile = os.OpenFile
	}
	defer func() {
		if r := recover(); r != nil {
			if file != nil {
				_ = syscall.Flock(int(file.Fd()), syscall.LOCK_UN)
				_ = file.Close()
			}
			db, err = nil, &CorruptError{Path: path, Err: fmt.Errorf("bbolt: %v", r)}
		}
	}()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	db, err = bolt.Open(path, 0o644, &bolt.Options{
		Timeout:      o.LockTimeout,
		ReadOnly:     o.ReadOnly,
		NoSync:       o.SyncInterval > 0,
		FreelistType: bolt.FreelistMapType,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := openFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	switch {
	case err == nil:
		// The lock is on the file this process opened. If the name was
		// given to another file meanwhile (a compaction swapped its copy
		// in while we waited for the lock), writing here would write into
		// an unlinked file: refuse, and let Open try the new one.
		if fi, serr := file.Stat(); serr == nil {
			if cur, serr := os.Stat(path); serr != nil || !os.SameFile(fi, cur) {
				_ = db.Close()
				return nil, errReplaced
			}
		}
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s (waited %v; is `flowrt run` using it?)", ErrLocked, path, o.LockTimeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("%w: %s: %v", ErrNotJournal, path, err)
	case errors.Is(err, berrors.ErrChecksum):
		return nil, &CorruptError{Path: path, Err: err}
	default:
		return nil, fmt.Errorf("flowrt/eventlog: open %s: %w", path, err)
	}
}

// errReplaced is returned by openBolt when the path names another file than
// the one it locked.
var errReplaced = errors.New("flowrt/eventlog: the journal file was replaced while opening it")

// containPanic turns a panic or memory fault inside bbolt, which happens on
// damaged files that pass the meta checks, into a CorruptError.
func containPanic(path string, err *error) {
	if r := recover(); r != nil {
		*err = &CorruptError{Path: path, Err: fmt.Errorf("bbolt: %v", r)}
	}
}

// Path returns the journal's file name.
func (l *Log) Path() string { return l.path }

// FormatVersion returns the format version stored in the journal
// (docs/FORMAT.md). A journal opened for writing has been raised to
// FormatVersion; one opened read-only keeps the version it was written
// with.
func (l *Log) FormatVersion() (uint32, error) {
	var v uint32
	err := l.view(func(btx *bolt.Tx) error {
		raw := btx.Bucket(bucketMeta).Get([]byte(metaVersion))
		if len(raw) != 4 {
			return &CorruptError{Path: l.path, Err: errors.New("meta bucket: bad format version record")}
		}
		v = binary.BigEndian.Uint32(raw)
		return nil
	})
	return v, err
}

// ID returns the journal's identity, fixed when the file was created.
func (l *Log) ID() ulid.ULID { return l.id }

// Close stops the journal's goroutines, lets appends already accepted
// finish, and closes the file. Further calls return ErrClosed. Close is
// idempotent.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return nil
	}
	l.closed = true
	l.closeMu.Unlock()
	close(l.stopc)
	<-l.donec
	l.bg.Wait()
	l.notify() // wake subscribers so they see ErrClosed
	var errs []error
	if l.opts.SyncInterval > 0 && !l.opts.ReadOnly {
		if err := l.db.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("final sync: %w", err))
		}
	}
	if err := l.db.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("flowrt/eventlog: close %s: %w", l.path, err)
	}
	return nil
}

func (l *Log) isClosed() bool {
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	return l.closed
}

func (l *Log) goBackground(fn func()) {
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		fn()
	}()
}

// View runs fn in a read-only transaction that sees a consistent snapshot
// of the journal. Keep it short: a long read transaction holds back the
// file's growth. The Tx must not be used after fn returns.
func (l *Log) View(fn func(*Tx) error) error {
	return l.view(func(btx *bolt.Tx) error { return fn(newTx(l, btx)) })
}

func (l *Log) view(fn func(*bolt.Tx) error) (err error) {
	if l.isClosed() {
		return ErrClosed
	}
	return viewContained(l.db, l.path, fn)
}

// viewContained runs fn in a read transaction on db, turning a panic or a
// memory fault on a damaged page into a CorruptError.
func viewContained(db *bolt.DB, path string, fn func(*bolt.Tx) error) error {
	return contained(path, func() error { return db.View(fn) })
}

// contained runs fn with memory faults turned into panics, and turns a
// panic or fault inside it into a CorruptError. Commits and opens, which
// must also release what bbolt holds, recover on their own.
func contained(path string, fn func() error) (err error) {
	defer containPanic(path, &err)
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	return fn()
}

// notify wakes every goroutine waiting for a commit.
func (l *Log) notify() {
	l.changedMu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.changedMu.Unlock()
}

// commitSignal returns a channel closed by the next commit. Take it before
// reading so no commit is missed between the read and the wait.
func (l *Log) commitSignal() <-chan struct{} {
	l.changedMu.Lock()
	defer l.changedMu.Unlock()
	return l.changed
}

// writeErr returns the sticky write error, if any.
func (l *Log) writeErr() error {
	if p := l.werr.Load(); p != nil {
		return *p
	}
	return nil
}

// mapWriteError gives a full disk its own error.
func mapWriteError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return err
}

func (l *Log) syncLoop() {
	t := time.NewTicker(l.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stopc:
			return
		case <-t.C:
			if err := l.db.Sync(); err != nil {
				err = fmt.Errorf("flowrt/eventlog: periodic sync of %s failed; appends are refused until reopened: %w", l.path, mapWriteError(err))
				l.werr.CompareAndSwap(nil, &err)
				l.opts.Logger.Error("sync failed", "path", l.path, "err", err)
			}
		}
	}
}
