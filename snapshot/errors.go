package snapshot

import "errors"

// ErrCorrupt is returned, wrapped, when a state's metadata or a snapshot's
// record cannot be decoded.
var ErrCorrupt = errors.New("flowrt/snapshot: corrupt state record")
