/*
Copyright The Kubernetes Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package version

// Base version information.
//
// These variables mirror k8s.io/component-base/version/base.go. They are
// overwritten at link time by hack/lib/version.sh (kube::version::ldflags):
//
//	-X 'k8s.io/kubernetes/staging/src/k8s.io/component-base/version.<name>=<value>'
//
// for <name> in buildDate, gitCommit, gitTreeState, gitVersion, gitMajor and
// gitMinor. The defaults below are what a plain `go build` (without the
// Kubernetes build scripts) reports.
var (
	gitMajor     string // major version, always numeric
	gitMinor     string // minor version, numeric possibly followed by "+"
	gitVersion   = "v0.0.0-master+unknown"
	gitCommit    = ""                     // sha1 from git, output of $(git rev-parse HEAD)
	gitTreeState = ""                     // state of git tree, either "clean", "dirty" or "archive"
	buildDate    = "1970-01-01T00:00:00Z" // build date in ISO8601 format, output of $(date -u +'%Y-%m-%dT%H:%M:%SZ')
)
