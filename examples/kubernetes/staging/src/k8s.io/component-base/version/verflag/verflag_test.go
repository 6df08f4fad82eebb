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

package verflag

import (
	"strings"
	"testing"

	"k8s.io/kubernetes/staging/src/k8s.io/component-base/version"
)

func TestVersionFlag(t *testing.T) {
	want := "kubectl " + version.Get().GitVersion + "\n"
	for _, arg := range []string{"--version", "-version", "--version=true"} {
		var b strings.Builder
		if code := Run("kubectl", "stub", []string{arg}, &b); code != 0 {
			t.Fatalf("%s: exit code %d", arg, code)
		}
		if b.String() != want {
			t.Errorf("%s: got %q, want %q", arg, b.String(), want)
		}
	}
}

func TestRawVersion(t *testing.T) {
	var b strings.Builder
	Run("kubelet", "stub", []string{"--version=raw"}, &b)
	for _, field := range []string{"gitVersion: ", "gitCommit: ", "gitTreeState: ", "buildDate: ", "platform: "} {
		if !strings.Contains(b.String(), field) {
			t.Errorf("--version=raw output lacks %q:\n%s", field, b.String())
		}
	}
}

func TestHelpAndDefault(t *testing.T) {
	var b strings.Builder
	Run("kubeadm", "bootstraps clusters", []string{"--help"}, &b)
	if b.String() != "kubeadm: bootstraps clusters\n" {
		t.Errorf("--help: got %q", b.String())
	}
	b.Reset()
	Run("kubeadm", "bootstraps clusters", nil, &b)
	if !strings.HasSuffix(b.String(), "kubeadm "+version.Get().GitVersion+"\n") {
		t.Errorf("no args: got %q", b.String())
	}
}
