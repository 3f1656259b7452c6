package server_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/flowrt/flowrt/internal/server"
)

func TestBackup(t *testing.T) {
	f := newFixture(t, fixtureOptions{start: true})
	to := filepath.Join(t.TempDir(), "hot.db")
	body := func(v server.BackupRequest) *strings.Reader {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return strings.NewReader(string(b))
	}
	tests := []struct {
		name string
		body *strings.Reader
		code int
		want string
	}{
		{"hot backup", body(server.BackupRequest{To: to}), http.StatusOK, `"path":`},
		{"existing file", body(server.BackupRequest{To: to}), http.StatusConflict, "exists"},
		{"replaced", body(server.BackupRequest{To: to, Overwrite: true}), http.StatusOK, `"path":`},
		{"the journal itself", body(server.BackupRequest{To: f.l.Path(), Overwrite: true}), http.StatusConflict, "in use"},
		{"relative path", body(server.BackupRequest{To: "hot.db"}), http.StatusBadRequest, "absolute"},
		{"not JSON", strings.NewReader("nope"), http.StatusBadRequest, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, b := f.do(t, request{method: http.MethodPost, path: "/v1/backup", body: tt.body})
			assert.Equal(t, tt.code, code, "%s", b)
			assert.Contains(t, string(b), tt.want)
		})
	}
	// The copy holds every event the journal held when it was taken.
	flowtest.MustCheck(t, to)
	l, err := eventlog.Open(to, &eventlog.Options{ReadOnly: true})
	require.NoError(t, err)
	defer l.Close()
	si, err := l.Info("events")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, si.Last, uint64(len(seed)))
}
