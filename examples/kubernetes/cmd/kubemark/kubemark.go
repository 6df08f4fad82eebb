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

// Command kubemark is a stub standing in for the real kubemark (same path as in
// kubernetes/kubernetes, so the binary has the same name). It only reports
// its build-time version: `kubemark --version` prints "kubemark <gitVersion>".
package main

import "k8s.io/kubernetes/staging/src/k8s.io/component-base/version/verflag"

func main() {
	verflag.Main("kubemark", "hollow node for scalability tests (kdist example stub)")
}
