// Command flowrt inspects and feeds a flowrt journal. See docs/CLI.md.
package main

import (
	"os"

	"github.com/flowrt/flowrt/cmd/flowrt/command"
)

func main() {
	err := command.Execute(command.NewRoot()) // prints "flowrt: <message>" on error
	os.Exit(command.ExitCode(err))
}
