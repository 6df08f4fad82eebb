// Command critest is a stub standing in for cri-tools' critest (validation test suite for CRI-compatible container runtimes).
// `critest --version` prints "critest version <Version>".
package main

import (
	"os"

	"example.com/crictl-like/internal/version"
)

func main() {
	for _, arg := range os.Args[1:] {
		switch arg {
		case "--version", "-version", "-v", "version":
			_, _ = os.Stdout.WriteString("critest version " + version.Version + "\n")
			return
		}
	}
	_, _ = os.Stdout.WriteString("critest: validation test suite for CRI-compatible container runtimes (kdist example stub)\n")
}
