package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/flowrt/flowrt/eventlog"
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
}

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

Exit status:
  0  the runtime stopped cleanly
  1  the journal could not be opened, or the runtime failed or had to be
     cancelled (a flow gave up, a stop timed out)
  2  usage or config error: nothing ran`,
		Example: `  flowrt run --db flowrt.db --config examples/flows.yaml
  flowrt run --db flowrt.db --config examples/flows.yaml --until-idle
  flowrt run --db /var/lib/flowrt/flowrt.db --config /etc/flowrt/flows.yaml --log-format json`,
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
	go func() {
		select {
		case s := <-signals:
			log.Warn("second signal: stopping at once", "signal", s.String())
			cancel()
		case <-stopCtx.Done():
		}
	}()
	return errors.Join(rt.Stop(stopCtx), rt.Wait())
}

// configError gives a config problem the usage exit status, and prints
// every problem on its own line.
func configError(err error) error {
	if errors.Is(err, runtime.ErrInvalidConfig) {
		return &exitError{code: ExitUsage, err: err}
	}
	return err
}
