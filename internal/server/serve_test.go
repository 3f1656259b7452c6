package server_test

import (
	"bufio"
	"context"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowrt/flowrt/internal/server"
)

// TestShutdownEndsFollow checks that Shutdown ends an open follow stream
// and returns before its deadline, with the serving goroutine gone.
func TestShutdownEndsFollow(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := server.Serve(ln, f.srv.Config.Handler, nil)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.Addr().String()+"/v1/streams/events/events?follow=1&from=5", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sc := bufio.NewScanner(resp.Body)
	require.True(t, sc.Scan(), "the event at seq 5")

	select {
	case <-srv.Done():
		t.Fatal("the server stopped by itself")
	default:
	}
	require.NoError(t, srv.Shutdown(ctx), "Shutdown ends the follow stream and returns in time")
	<-srv.Done()
	require.NoError(t, srv.Err())
	require.False(t, sc.Scan(), "the stream ends")
	_, err = http.Get("http://" + srv.Addr().String() + "/healthz")
	require.Error(t, err, "no longer listening")
}

func TestServeFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	srv := server.Serve(ln, http.NotFoundHandler(), nil)
	select {
	case <-srv.Done():
	case <-time.After(testTimeout):
		t.Fatal("Serve on a closed listener did not return")
	}
	require.ErrorContains(t, srv.Err(), "serve on")
	require.ErrorContains(t, srv.Shutdown(context.Background()), "serve on")
}

func TestDiscovery(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "flowrt.db")
	path := server.DiscoveryPath(db)
	require.Equal(t, db+".http", path)

	_, err := server.ReadDiscovery(path)
	require.ErrorIs(t, err, fs.ErrNotExist)

	want := server.Discovery{Addr: "127.0.0.1:7070", PID: 42, TokenFile: "/etc/flowrt/token"}
	require.NoError(t, server.WriteDiscovery(path, want))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.JSONEq(t, `{"addr":"127.0.0.1:7070","pid":42,"token_file":"/etc/flowrt/token"}`, string(b))
	got, err := server.ReadDiscovery(path)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// Overwritten whole; no temporary file is left behind.
	want.PID = 43
	require.NoError(t, server.WriteDiscovery(path, want))
	got, err = server.ReadDiscovery(path)
	require.NoError(t, err)
	assert.Equal(t, 43, got.PID)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)

	require.NoError(t, server.RemoveDiscovery(path))
	require.NoError(t, server.RemoveDiscovery(path), "removing a missing file is not an error")
	_, err = server.ReadDiscovery(path)
	require.ErrorIs(t, err, fs.ErrNotExist)

	require.NoError(t, os.WriteFile(path, []byte(`{"pid":1}`), 0o600))
	_, err = server.ReadDiscovery(path)
	require.ErrorContains(t, err, "names no address")
}

func TestDialAddr(t *testing.T) {
	tests := []struct{ name, listen, want string }{
		{"loopback", "127.0.0.1:7070", "127.0.0.1:7070"},
		{"IPv6 loopback", "[::1]:7070", "[::1]:7070"},
		{"every IPv4 interface", "0.0.0.0:7070", "127.0.0.1:7070"},
		{"every interface", "[::]:7070", "127.0.0.1:7070"},
		{"one interface", "10.1.2.3:7070", "10.1.2.3:7070"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, err := net.ResolveTCPAddr("tcp", tt.listen)
			require.NoError(t, err)
			assert.Equal(t, tt.want, server.DialAddr(addr))
		})
	}
}
