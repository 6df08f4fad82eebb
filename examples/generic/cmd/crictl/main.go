// Command crictl is a stub standing in for cri-tools' crictl (CLI for CRI-compatible container runtimes).
// `crictl --version` prints "crictl version <Version>".
package main

import (
	"os"

	"example.com/crictl-like/internal/version"
	"example.com/semver"
)

func main() {
	for _, arg := range os.Args[1:] {
		switch arg {
		case "--version", "-version", "-v", "version":
			_, _ = os.Stdout.WriteString("crictl version " + version.Version + "\n")
			if !semver.IsValid(version.Version) {
				_, _ = os.Stderr.WriteString("crictl: warning: " + version.Version + " is not a semantic version\n")
			}
			return
		}
	}
	_, _ = os.Stdout.WriteString("crictl: CLI for CRI-compatible container runtimes (kdist example stub)\n")
}
