package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// Discovery is the content of the discovery file `flowrt run --http`
// writes next to the journal once it listens, and removes when it stops:
// a command that finds the journal locked reads it to talk to the daemon.
type Discovery struct {
	// Addr is the host:port to connect to, such as "127.0.0.1:7070". A
	// daemon listening on every interface advertises loopback.
	Addr string `json:"addr"`
	// PID is the daemon's process ID.
	PID int `json:"pid"`
	// TokenFile is the absolute name of the file holding the bearer token
	// (--token-file), or empty: no token, or one given with --token.
	TokenFile string `json:"token_file"`
}

// DiscoveryPath returns the discovery file of the journal at db:
// "<db>.http".
func DiscoveryPath(db string) string { return db + ".http" }

// DialAddr returns the address clients should connect to for a listener
// address: an unspecified IP (":7070", "0.0.0.0:7070", "[::]:7070")
// becomes loopback.
func DialAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// WriteDiscovery writes d to path, readable by its owner only (0600):
// into a temporary file in the same directory, synced, then renamed over
// path, so a reader never sees half a file.
func WriteDiscovery(path string, d Discovery) (err error) {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("flowrt/server: encode discovery file: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("flowrt/server: write discovery file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	// CreateTemp makes the file 0600 already; say so for umask-proofing.
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("flowrt/server: write discovery file %s: %w", path, err)
	}
	return nil
}

// ReadDiscovery reads the discovery file at path. A missing file is an
// error for which errors.Is(err, fs.ErrNotExist) holds: no daemon
// advertises itself.
func ReadDiscovery(path string) (Discovery, error) {
	var d Discovery
	b, err := os.ReadFile(path)
	if err != nil {
		return d, fmt.Errorf("flowrt/server: read discovery file: %w", err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("flowrt/server: discovery file %s: %w", path, err)
	}
	if d.Addr == "" {
		return d, fmt.Errorf("flowrt/server: discovery file %s names no address", path)
	}
	return d, nil
}

// RemoveDiscovery removes the discovery file at path; a missing one is
// not an error.
func RemoveDiscovery(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("flowrt/server: remove discovery file: %w", err)
	}
	return nil
}
