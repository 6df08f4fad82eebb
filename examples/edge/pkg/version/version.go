// Package version holds what hack/lib/version.sh stamps with -X at link time.
package version

// Set by hack/lib/version.sh (kube::version::ldflags) from git on the building machine.
var (
	gitVersion   = "v0.0.0-master+unknown"
	gitCommit    = ""
	gitTreeState = ""
	buildDate    = "1970-01-01T00:00:00Z"
)

// String is the line `<binary> version` prints.
func String() string {
	return "gitVersion:" + gitVersion + " gitCommit:" + gitCommit + " gitTreeState:" + gitTreeState + " buildDate:" + buildDate
}
