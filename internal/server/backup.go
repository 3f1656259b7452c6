package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/eventjson"
	"github.com/flowrt/flowrt/snapshot"
)

// BackupRequest asks the daemon for a hot backup of its journal.
type BackupRequest struct {
	// To is the backup file to write, an absolute path on the daemon's host.
	To string `json:"to"`
	// Overwrite replaces an existing file at To (never a live journal).
	Overwrite bool `json:"overwrite"`
}

// BackupAnswer is the answer of a successful backup.
type BackupAnswer struct {
	Path      string                `json:"path"`
	Bytes     int64                 `json:"bytes"`
	Streams   []eventlog.StreamInfo `json:"streams"`
	Events    uint64                `json:"events"`
	Consumers int                   `json:"consumers"`
	TookMS    int64                 `json:"took_ms"`
}

// backup writes a consistent, verified copy of the journal while the
// runtime keeps writing (snapshot.Backup): POST /v1/backup.
func (a *api) backup(w http.ResponseWriter, r *http.Request) {
	var req BackupRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "backup: the body must be {\"to\": \"/absolute/path\"}: "+err.Error())
		return
	}
	if !filepath.IsAbs(req.To) {
		writeError(w, http.StatusBadRequest, "backup: \"to\" must be an absolute path on the daemon's host")
		return
	}
	rep, err := snapshot.Backup(r.Context(), a.log, req.To, &snapshot.BackupOptions{Overwrite: req.Overwrite})
	switch {
	case errors.Is(err, snapshot.ErrExists), errors.Is(err, snapshot.ErrInUse):
		writeError(w, http.StatusConflict, "backup: "+eventjson.Message(err))
		return
	case err != nil:
		a.fail(w, r, "backup", err)
		return
	}
	writeJSON(w, http.StatusOK, BackupAnswer{
		Path: rep.Path, Bytes: rep.Bytes, Streams: rep.Streams,
		Events: rep.Check.Events, Consumers: rep.Check.Consumers, TookMS: rep.Took.Milliseconds(),
	})
}
