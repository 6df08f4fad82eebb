// Package version holds the version stamped in at build time:
//
//	go build -ldflags "-X example.com/crictl-like/internal/version.Version=v1.2.3"
//
// (the Makefile does this from $VERSION).
package version

// Version is the release version; "v0.0.0-dev" when not stamped.
var Version = "v0.0.0-dev"
