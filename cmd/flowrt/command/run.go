package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/flowrt/flowrt/internal/server"
	"github.com/flowrt/flowrt/runtime"
	"github.com/flowrt/flowrt/supervisor"
)

type runOptions struct {
	db          string
	config      string
	untilIdle   bool
	stopTimeout time.Duration
	logFormat   string
	logLevel    string
	lockTimeout time.Duration
	http        string // address of the HTTP API; "" for none
	token       string
	tokenFile   string
	maxBody     int64
}

// httpStopTimeout bounds the HTTP server's shutdown once the runtime has
// stopped: in-flight requests finish, follow streams end at once.
const httpStopTimeout = 5 * time.Second

func newRunCommand() *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run --db FILE --config FLOWS.yaml [--until-idle]",
		Short: "Run the flows of a config file over a journal",
		Long: `Run runs the flows declared in a config file (docs/FLOWS.md) over the journal,
each as its own durable consumer, under the supervisor that records the
lifecycle in the journal's $system stream (see 'flowrt dump --stream $system').

It runs until SIGINT or SIGTERM, then stops gracefully: intake stops, running
handlers finish, every flow commits its ack floor. A stop that takes longer
than --stop-timeout cancels the handlers; a second signal does so at once.
With --until-idle it stops by itself once every flow has caught up with its
stream, for batch jobs and scripts.

A config that does not validate is reported, every problem with its file and
line, and nothing runs (exit status 2). A restart after a crash resumes each
flow after its last committed floor, and records one recovery event.

Logs are structured (log/slog) on stderr: text, or JSON with --log-format json.

With --http ADDR it serves the HTTP API (docs/CLI.md, "HTTP API") while it
runs: event ingest (POST /v1/streams/{stream}/events), /healthz, /readyz,
/metrics (Prometheus), /v1/status, /v1/topology, and the read side that
'flowrt dump' uses on the journal while this process holds it. Once it
listens it writes the address to <db>.http (mode 0600), and removes that
file when it stops. Listening beyond loopback requires a bearer token
(--token-file, or --token, which other users can see in ps); every request
but /healthz and /readyz must then carry "Authorization: Bearer <token>".

Exit status:
  0  the runtime stopped cleanly
  1  the journal could not be opened, the HTTP address could not be
     listened on, or the runtime failed or had to be cancelled (a flow gave
     up, a stop timed out)
  2  usage or config error: nothing ran`,
		Example: `  flowrt run --db flowrt.db --config examples/flows.yaml
  flowrt run --db flowrt.db --config examples/flows.yaml --until-idle
  flowrt run --db /var/lib/flowrt/flowrt.db --config /etc/flowrt/flows.yaml --log-format json

  # Serve the HTTP API on loopback, and post an event to it.
  flowrt run --db flowrt.db --config examples/flows.yaml --http 127.0.0.1:7070 &
  curl -d '{"type":"order.created","key":"o-1"}' http://127.0.0.1:7070/v1/streams/events/events

  # Beyond loopback, with a token.
  flowrt run --db flowrt.db --config flows.yaml --http :7070 --token-file /etc/flowrt/token`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRun(cmd, &o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "journal file (created if missing)")
	f.StringVar(&o.config, "config", "", "flows config file (YAML)")
	f.BoolVar(&o.untilIdle, "until-idle", false, "stop once every flow has caught up")
	f.DurationVar(&o.stopTimeout, "stop-timeout", 30*time.Second, "how long a graceful stop may take before handlers are cancelled")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.DurationVar(&o.lockTimeout, "lock-timeout", defaultLockTimeout, "how long to wait for another process to release the journal")
	f.StringVar(&o.http, "http", "", "serve the HTTP API on this address, such as 127.0.0.1:7070 (default: none)")
	f.StringVar(&o.token, "token", "", "bearer token the HTTP API requires (visible in ps: prefer --token-file)")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token the HTTP API requires")
	f.Int64Var(&o.maxBody, "max-body", server.DefaultMaxBody, "largest ingest request body, in bytes; larger ones get 413")
	return cmd
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErrorf("--log-format %q: want text or json", format)
}

func runRun(cmd *cobra.Command, o *runOptions) error {
	if o.db == "" || o.config == "" {
		return usageErrorf("run needs --db and --config")
	}
	if o.stopTimeout <= 0 {
		return usageErrorf("--stop-timeout must be positive, got %v", o.stopTimeout)
	}
	if o.lockTimeout <= 0 {
		return usageErrorf("--lock-timeout must be positive, got %v", o.lockTimeout)
	}
	log, err := newLogger(cmd.ErrOrStderr(), o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	api, err := checkHTTP(cmd, o)
	if err != nil {
		return err
	}
	cfg, err := runtime.LoadConfig(o.config)
	if err != nil {
		return configError(err)
	}
	// Validate against the runtime's registries before touching the journal.
	if err := cfg.Validate(nil); err != nil {
		return configError(err)
	}
	l, err := openJournal(o.db, &eventlog.Options{LockTimeout: o.lockTimeout})
	if err != nil {
		return err
	}
	defer l.Close()
	rt, err := runtime.New(l, &runtime.Options{
		Logger:      log,
		StopTimeout: o.stopTimeout,
		Supervisor:  &supervisor.Options{Logger: log, Details: map[string]string{"config": o.config, "command": "flowrt run"}},
	})
	if err != nil {
		return err
	}
	if err := rt.AddConfig(cfg); err != nil {
		return configError(err)
	}

	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()

	stopHTTP := func() error { return nil }
	if api == nil {
		// This process holds the journal: a discovery file left by a
		// daemon that was killed names nobody, and would mislead dump.
		if err := server.RemoveDiscovery(server.DiscoveryPath(o.db)); err != nil {
			log.Warn("could not remove a stale discovery file", "path", server.DiscoveryPath(o.db), "err", err)
		}
	}
	if api != nil {
		srv, err := startHTTP(o, api, l, rt, log)
		if err != nil {
			return err
		}
		watched := make(chan struct{})
		go func() {
			// The API failing stops the runtime; stopHTTP reports why.
			defer close(watched)
			select {
			case <-srv.Done():
				cancel()
			case <-ctx.Done():
			}
		}()
		stopHTTP = sync.OnceValue(func() error {
			err := stopServer(srv, o.db, log)
			<-watched // srv.Done is closed now
			return err
		})
		defer stopHTTP() // on the early returns; the journal closes after
	}

	names := make([]string, 0, len(rt.Flows()))
	for _, f := range rt.Flows() {
		names = append(names, f.Name)
	}
	log.Info("starting", "db", o.db, "config", o.config, "flows", names)
	if o.untilIdle {
		go func() {
			select {
			case s := <-signals:
				log.Info("signal: stopping", "signal", s.String())
				cancel()
			case <-ctx.Done():
			}
		}()
		err = rt.RunUntilIdle(ctx)
	} else {
		err = serve(ctx, rt, log, signals, o.stopTimeout)
	}
	err = errors.Join(err, stopHTTP())
	for _, s := range rt.Stats() {
		log.Info("flow", "flow", s.Flow, "matched", s.Matched, "processed", s.Processed, "filtered", s.Filtered,
			"failed", s.Failed, "dead_lettered", s.DeadLettered, "committed", s.Committed, "lag", s.Lag)
	}
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	log.Info("stopped")
	return nil
}

// serve starts the runtime and stops it on the first signal (or when ctx
// ends), gracefully within stopTimeout; a second signal cancels the stop.
func serve(ctx context.Context, rt *runtime.Runtime, log *slog.Logger, signals <-chan os.Signal, stopTimeout time.Duration) error {
	if err := rt.Start(ctx); err != nil {
		return err
	}
	log.Info("running")
	select {
	case s := <-signals:
		log.Info("signal: stopping gracefully", "signal", s.String(), "stop_timeout", stopTimeout)
	case <-ctx.Done():
	case <-rt.Done():
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	var second atomic.Bool
	go func() {
		select {
		case s := <-signals:
			log.Warn("second signal: stopping at once", "signal", s.String())
			second.Store(true)
			cancel()
		case <-stopCtx.Done():
		}
	}()
	err := errors.Join(rt.Stop(stopCtx), rt.Wait())
	switch {
	case err == nil:
	case second.Load() && errors.Is(err, context.Canceled):
		err = fmt.Errorf("stopped at once by a second signal: running handlers were cancelled, and their events are delivered again at the next start (%w)", err)
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("the graceful stop took longer than --stop-timeout %v: running handlers were cancelled, and their events are delivered again at the next start (%w)", stopTimeout, err)
	}
	return err
}

// configError gives a config problem the usage exit status, and prints
// every problem on its own line.
func configError(err error) error {
	if errors.Is(err, runtime.ErrInvalidConfig) {
		return &exitError{code: ExitUsage, err: err}
	}
	return err
}

// httpConfig is the checked HTTP flags of run.
type httpConfig struct {
	token     string
	tokenFile string // absolute, or "" when the token came from --token or there is none
}

// checkHTTP checks the HTTP flags and reads the token file. It returns
// nil when --http is not given.
func checkHTTP(cmd *cobra.Command, o *runOptions) (*httpConfig, error) {
	f := cmd.Flags()
	if o.http == "" {
		for _, name := range []string{"token", "token-file", "max-body"} {
			if f.Changed(name) {
				return nil, usageErrorf("--%s needs --http ADDR", name)
			}
		}
		return nil, nil
	}
	if o.token != "" && o.tokenFile != "" {
		return nil, usageErrorf("--token and --token-file are exclusive: give one")
	}
	if f.Changed("token") && o.token == "" {
		return nil, usageErrorf("--token is empty")
	}
	if o.maxBody <= 0 {
		return nil, usageErrorf("--max-body must be positive, got %d", o.maxBody)
	}
	host, port, err := net.SplitHostPort(o.http)
	if err != nil {
		return nil, usageErrorf("--http %q: want HOST:PORT, such as 127.0.0.1:7070", o.http)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return nil, usageErrorf("--http %q: port %q is not a port number", o.http, port)
	}
	c := &httpConfig{token: o.token}
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return nil, &exitError{code: ExitUsage, err: fmt.Errorf("--token-file: %w", err)}
		}
		c.token = strings.TrimSpace(string(b))
		if c.token == "" {
			return nil, usageErrorf("--token-file %s is empty", o.tokenFile)
		}
		if c.tokenFile, err = filepath.Abs(o.tokenFile); err != nil {
			return nil, &exitError{code: ExitUsage, err: fmt.Errorf("--token-file: %w", err)}
		}
	}
	if c.token == "" && !isLoopback(host) {
		return nil, usageErrorf("--http %s listens beyond loopback: give a bearer token with --token-file (or --token), or listen on 127.0.0.1", o.http)
	}
	return c, nil
}

// isLoopback reports whether host names only the loopback interface. An
// empty host means every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// startHTTP listens on --http, serves the API, and then writes the
// discovery file.
func startHTTP(o *runOptions, c *httpConfig, l *eventlog.Log, rt *runtime.Runtime, log *slog.Logger) (*server.Server, error) {
	h, err := server.New(l, &server.Options{Runtime: rt, Token: c.token, MaxBody: o.maxBody, Logger: log.With("component", "http")})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.http)
	if err != nil {
		return nil, fmt.Errorf("--http: %w", err)
	}
	srv := server.Serve(ln, h, log.With("component", "http"))
	path := server.DiscoveryPath(o.db)
	d := server.Discovery{Addr: server.DialAddr(srv.Addr()), PID: os.Getpid(), TokenFile: c.tokenFile}
	if err := server.WriteDiscovery(path, d); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), httpStopTimeout)
		defer cancel()
		return nil, errors.Join(err, srv.Shutdown(ctx))
	}
	log.Info("http: listening", "addr", srv.Addr().String(), "discovery", path, "token", c.token != "")
	return srv, nil
}

// stopServer stops advertising the API, then stops serving it: a dump
// that arrives meanwhile waits for the journal's lock instead.
func stopServer(srv *server.Server, db string, log *slog.Logger) error {
	rmErr := server.RemoveDiscovery(server.DiscoveryPath(db))
	ctx, cancel := context.WithTimeout(context.Background(), httpStopTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
		log.Warn("http: requests still running after the stop timeout were cut", "timeout", httpStopTimeout)
	}
	log.Info("http: stopped")
	if err := srv.Err(); err != nil { // it failed while the runtime ran
		return errors.Join(fmt.Errorf("http: %w", err), rmErr)
	}
	return rmErr
}
