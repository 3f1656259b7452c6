package snapshot

import "errors"

var (
	// ErrCorrupt is returned, wrapped, when a state's metadata or a
	// snapshot's record cannot be decoded.
	ErrCorrupt = errors.New("flowrt/snapshot: corrupt state record")

	// ErrNotSettled is returned, wrapped, by Take when the state holds
	// changes of events above its floor (done before a clean stop): a
	// snapshot now would not be the state at its floor. It succeeds once
	// the floor has passed them.
	ErrNotSettled = errors.New("flowrt/snapshot: state is ahead of its floor")

	// ErrExists is returned by Backup (without BackupOptions.Overwrite) and
	// by Restore when something already exists at the destination. Nothing
	// was written.
	ErrExists = errors.New("flowrt/snapshot: destination exists")

	// ErrInUse is returned by Backup and Restore when the destination is a
	// file that a process holds open as a journal (its lock is taken), or is
	// the journal being backed up; errors.Is(err, eventlog.ErrLocked) holds
	// for the first. Overwrite does not override it. Nothing was written.
	ErrInUse = errors.New("flowrt/snapshot: destination is a journal in use")

	// ErrVerify is returned, wrapping eventlog's error (ErrNotJournal,
	// ErrTruncated, ErrCorrupt, ErrVersion, or the problems Check found),
	// when a copy written by Backup, or the backup given to Restore, does
	// not open as a journal or does not pass Check. Nothing was written at
	// the destination.
	ErrVerify = errors.New("flowrt/snapshot: copy failed verification")
)
