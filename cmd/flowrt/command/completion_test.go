package command

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCompletionScripts generates each shell's script.
func TestCompletionScripts(t *testing.T) {
	tests := []struct {
		shell string
		marks []string // lines that only a working script of that shell has
	}{
		{"bash", []string{"# bash completion V2 for flowrt", "__start_flowrt()", "complete -o default -F __start_flowrt flowrt"}},
		{"zsh", []string{"#compdef flowrt", "_flowrt()", "compdef _flowrt flowrt"}},
		{"fish", []string{"# fish completion for flowrt", "function __flowrt_perform_completion", "complete -c flowrt "}},
	}
	for _, tt := range tests {
		t.Run(tt.shell, func(t *testing.T) {
			r := run(t, "", "completion", tt.shell).requireOK(t)
			require.Empty(t, r.stderr)
			for _, m := range tt.marks {
				require.Contains(t, r.stdout, m)
			}
			require.Contains(t, r.stdout, "__complete", "the script asks flowrt for dynamic completions")
		})
	}
}

// complete runs flowrt's hidden completion request, as the scripts do, and
// returns the offered words without their descriptions.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	r := run(t, "", append([]string{"__complete"}, args...)...).requireOK(t)
	var words []string
	for line := range strings.Lines(r.stdout) {
		line = strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(line, ":") { // the directive
			continue
		}
		words = append(words, strings.SplitN(line, "\t", 2)[0])
	}
	return words
}

func TestCompletionWords(t *testing.T) {
	db := opsJournal(t)
	defer requireDBNoChange(t, db)()
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"shells", []string{"completion", ""}, []string{"bash", "zsh", "fish"}},
		{"dlq actions", []string{"dlq", ""}, []string{"purge", "retry"}},
		{"consumer names", []string{"consumer", "reset", "--db", db, ""}, []string{"billing", "shipping"}},
		{"consumer prefix", []string{"consumer", "reset", "--db", db, "s"}, []string{"shipping"}},
		{"consumers of another stream", []string{"consumer", "reset", "--db", db, "--stream", "audit", ""}, nil},
		{"no journal, no names", []string{"consumer", "reset", ""}, nil},
		{"reset positions", []string{"consumer", "reset", "billing", "--to", ""}, []string{"earliest", "latest"}},
		{"dlq consumer flag", []string{"dlq", "retry", "--db", db, "--consumer", "b"}, []string{"billing"}},
		{"stream flag", []string{"truncate", "--db", db, "--stream", ""}, []string{"audit", "events"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, complete(t, tt.args...))
		})
	}
	t.Run("commands", func(t *testing.T) {
		// Other commands may begin with "c" too.
		require.Subset(t, complete(t, "c"), []string{"compact", "completion", "consumer"})
	})
}
