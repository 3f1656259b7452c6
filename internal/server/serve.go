package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Timeouts of the daemon's http.Server. There is no overall read or write
// timeout: follow streams stay open for as long as the client reads. The
// ingest handler bounds reading its body, and every response write is
// bounded by writeStall.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// Server serves a handler on a listener until Shutdown. It is safe for
// concurrent use.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc // ends every request's context
	done   chan struct{}      // closed when Serve has returned
	err    error              // Serve's error, other than ErrServerClosed; set before done closes
}

// Serve starts serving h on ln in a goroutine that Shutdown stops. Every
// request's context ends when Shutdown begins, so that follow streams
// return; logger receives the http.Server's own errors.
func Serve(ln net.Listener, h http.Handler, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	base, cancel := context.WithCancel(context.Background())
	s := &Server{ln: ln, cancel: cancel, done: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	s.srv.RegisterOnShutdown(cancel)
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = fmt.Errorf("flowrt/server: serve on %s: %w", ln.Addr(), err)
		}
	}()
	return s
}

// Addr returns the address the server listens on: with port 0 asked, the
// port the system chose.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Done returns a channel closed when the server has stopped serving: after
// Shutdown, or at once if accepting connections failed (Err says why).
func (s *Server) Done() <-chan struct{} { return s.done }

// Err returns why the server stopped serving on its own, once Done is
// closed; nil after Shutdown.
func (s *Server) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Shutdown stops the server: it stops accepting connections, ends every
// request's context (follow streams return), and waits for the handlers
// to finish. If ctx ends first it closes the remaining connections and
// returns ctx.Err(). It returns once the serving goroutine has exited,
// with the error that stopped it, if any.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	return errors.Join(err, s.err)
}
