// Package server is the HTTP API of `flowrt run --http`: event ingest, the
// runtime's health, status, topology and Prometheus metrics, and the read
// side that `flowrt dump` uses on a journal the daemon holds open.
//
// # Basics
//
// New returns the API as an http.Handler over an open journal and its
// runtime; Serve runs it on a listener with the timeouts a long-lived
// daemon needs, and Server.Shutdown stops it (ending follow streams) before
// the journal is closed. The daemon advertises itself in a discovery file
// next to the journal (DiscoveryPath, WriteDiscovery, ReadDiscovery).
//
//	h, err := server.New(l, &server.Options{Runtime: rt, Token: token})
//	ln, err := net.Listen("tcp", "127.0.0.1:7070")
//	srv := server.Serve(ln, h, logger)
//	defer srv.Shutdown(ctx)
//
// The endpoints (docs/CLI.md, "HTTP API"):
//
//	POST /v1/streams/{stream}/events   ingest one JSON event or JSON lines
//	GET  /v1/streams/{stream}/events   read events as JSON lines; follow=1 tails
//	GET  /v1/consumers                 consumer offsets, lag, dead-letter counts
//	GET  /v1/dlq                       dead letters (stream=, consumer=)
//	GET  /v1/state/{flow}              a flow's committed state (key=, prefix=)
//	GET  /v1/system/runs               the supervisor's runs from $system
//	GET  /v1/status                    runtime state, flows, streams
//	GET  /v1/topology                  streams, flows, sinks
//	GET  /metrics                      Prometheus text
//	GET  /healthz, /readyz             liveness and readiness, never authenticated
//
// Every answer is JSON (JSON lines for events); an error is
// {"error": "message"} with a 4xx or 5xx status.
//
// # Caveats
//
// With a token every endpoint but /healthz and /readyz needs
// "Authorization: Bearer <token>". There is no TLS: bind to loopback, or
// put a TLS-terminating proxy in front.
package server
