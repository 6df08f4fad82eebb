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

package e2e_node

import (
	"flag"
	"os"
	"testing"
)

var printVersion = flag.Bool("version", false, "print the version and exit")

// TestMain lets `e2e_node.test --version` print "e2e_node.test <gitVersion>", like the
// other binaries of the release.
func TestMain(m *testing.M) {
	flag.Parse()
	if *printVersion {
		_, _ = os.Stdout.WriteString("e2e_node.test " + BuildVersion + "\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestBuildVersionIsSet(t *testing.T) {
	if BuildVersion == "" {
		t.Fatal("BuildVersion is empty")
	}
	t.Logf("e2e_node.test built at %s", BuildVersion)
}
