package command

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flowrt/flowrt/eventlog"
	"github.com/spf13/cobra"
)

// completionShells are the shells `flowrt completion` writes scripts for.
var completionShells = []string{"bash", "zsh", "fish"}

func newCompletionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Completion prints the script that teaches bash, zsh or fish to complete flowrt's
commands and flags. Where a journal is named with --db, the scripts also
complete stream and consumer names read from it (read-only, waiting at most
` + completionLockTimeout.String() + ` for the lock).

bash needs the bash-completion package (version 2); the script goes in
~/.local/share/bash-completion/completions/flowrt, or is sourced from
~/.bashrc.

zsh needs compinit: the script goes in a directory of $fpath as _flowrt.
If completion is not yet enabled, add 'autoload -U compinit; compinit' to
~/.zshrc first.

fish reads ~/.config/fish/completions/flowrt.fish.

Open a new shell after installing a script.

Exit status:
  0  the script was printed
  2  usage error: no shell, or a shell other than bash, zsh or fish`,
		Example: `  # bash, for the current user
  flowrt completion bash > ~/.local/share/bash-completion/completions/flowrt

  # bash, for this shell only
  source <(flowrt completion bash)

  # zsh
  flowrt completion zsh > "${fpath[1]}/_flowrt"

  # fish
  flowrt completion fish > ~/.config/fish/completions/flowrt.fish`,
		ValidArgs: completionShells,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("%s takes one argument, the shell: %s", cmd.CommandPath(), strings.Join(completionShells, ", "))
			}
			if !slices.Contains(completionShells, args[0]) {
				return usageErrorf("unknown shell %q: want %s", args[0], strings.Join(completionShells, ", "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, w := cmd.Root(), cmd.OutOrStdout()
			var err error
			switch args[0] {
			case "bash":
				err = root.GenBashCompletionV2(w, true)
			case "zsh":
				err = root.GenZshCompletion(w)
			case "fish":
				err = root.GenFishCompletion(w, true)
			}
			if err != nil {
				return fmt.Errorf("write the %s completion script: %w", args[0], err)
			}
			return nil
		},
	}
	return cmd
}

// completionLockTimeout bounds how long completing a name waits for the
// journal's lock: a shell must not hang on a journal that `flowrt run`
// holds.
const completionLockTimeout = 200 * time.Millisecond

// completionLog opens the journal named by cmd's --db read-only for
// completion, or returns nil.
func completionLog(cmd *cobra.Command) *eventlog.Log {
	db, err := cmd.Flags().GetString("db")
	if err != nil || db == "" {
		return nil
	}
	l, err := eventlog.Open(db, &eventlog.Options{ReadOnly: true, LockTimeout: completionLockTimeout})
	if err != nil {
		return nil
	}
	return l
}

// completeStreams completes a --stream flag with the streams of --db.
func completeStreams(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	l := completionLog(cmd)
	if l == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer l.Close()
	infos, err := l.Streams()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, si := range infos {
		if strings.HasPrefix(si.Name, toComplete) {
			out = append(out, fmt.Sprintf("%s\t%s", si.Name, plural(int(si.Count), "event")))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeConsumers returns the consumers of cmd's --stream in --db whose
// names start with prefix, each with its offset and lag as description.
func completeConsumers(cmd *cobra.Command, prefix string) []string {
	l := completionLog(cmd)
	if l == nil {
		return nil
	}
	defer l.Close()
	stream, _ := cmd.Flags().GetString("stream")
	cs, err := l.Consumers(stream)
	if err != nil {
		return nil
	}
	var out []string
	for _, c := range cs {
		if strings.HasPrefix(c.Name, prefix) {
			out = append(out, fmt.Sprintf("%s\toffset %d, lag %d", c.Name, c.Offset, c.Lag))
		}
	}
	return out
}

// completeConsumerArg completes the consumer NAME argument.
func completeConsumerArg(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return completeConsumers(cmd, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeConsumerFlag completes a --consumer flag.
func completeConsumerFlag(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return completeConsumers(cmd, toComplete), cobra.ShellCompDirectiveNoFileComp
}
