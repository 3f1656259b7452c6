package flowtest_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flowrt/flowrt/internal/flowtest"
	"github.com/stretchr/testify/require"
)

// helperConfig tells TestChildHelper what to do.
type helperConfig struct {
	Fail   bool // return an error at once
	Stderr int  // bytes to write to stderr first
}

// TestChildHelper is the child of TestChild.
func TestChildHelper(t *testing.T) {
	flowtest.RunChild(t, time.Minute, func(cfg helperConfig) error {
		fmt.Fprint(os.Stderr, strings.Repeat("x", cfg.Stderr))
		if cfg.Fail {
			return fmt.Errorf("failing as told")
		}
		fmt.Print("ready\nno newline")
		select {} // until killed
	})
}

func TestChild(t *testing.T) {
	const d = 30 * time.Second
	start := func(cfg helperConfig) (*flowtest.Child, chan struct{}, *[]string) {
		ready := make(chan struct{})
		var lines []string
		c, err := flowtest.StartChild("TestChildHelper", cfg, func(line []byte) {
			if lines = append(lines, string(line)); len(lines) == 1 {
				close(ready)
			}
		})
		require.NoError(t, err)
		t.Cleanup(func() { c.Stop(d) })
		return c, ready, &lines
	}

	t.Run("killed", func(t *testing.T) {
		c, ready, lines := start(helperConfig{Stderr: 100 << 10})
		require.NoError(t, c.Await(ready, d))
		require.NoError(t, c.KillAfter(time.Millisecond, d))
		require.Equal(t, []string{"ready\n", "no newline"}, *lines, "the last line comes without a newline")
		diag := c.Diagnostics()
		require.Contains(t, diag, "signal: killed")
		require.Contains(t, diag, "bytes left out", "stderr is bounded")
		require.Less(t, len(diag), 70<<10)
	})

	t.Run("fails", func(t *testing.T) {
		c, ready, _ := start(helperConfig{Fail: true})
		require.ErrorContains(t, c.Await(ready, d), "exited before it was ready")
		require.Error(t, c.Wait(d))
		require.Contains(t, c.Diagnostics(), "exit status 1")
		require.Contains(t, c.Diagnostics(), "failing as told")
		require.ErrorContains(t, c.KillAfter(time.Millisecond, d), "exited on its own")
	})
}

func TestCycles(t *testing.T) {
	t.Setenv(flowtest.CyclesEnv, "")
	require.Equal(t, 7, flowtest.Cycles(t, 7))
	t.Setenv(flowtest.CyclesEnv, "3")
	require.Equal(t, 3, flowtest.Cycles(t, 7))
	t.Setenv(flowtest.SeedEnv, "42")
	require.Equal(t, int64(42), flowtest.Seed(t))
}
