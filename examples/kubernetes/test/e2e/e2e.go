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

// Package e2e stands in for the real Kubernetes e2e suite. It is built
// with `go test -c -o e2e.test` by hack/lib/golang.sh.
package e2e

import "k8s.io/kubernetes/staging/src/k8s.io/component-base/version"

// BuildVersion is the gitVersion stamped into the test binary at link time.
// Keeping a reference here makes sure the version string is linked into
// e2e.test, so release tooling can find it in the binary's bytes.
var BuildVersion = version.Get().GitVersion
