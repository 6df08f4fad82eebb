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

import (
	"runtime"
	"testing"
)

func TestGetReportsPlatformAndGoVersion(t *testing.T) {
	info := Get()
	if want := runtime.GOOS + "/" + runtime.GOARCH; info.Platform != want {
		t.Errorf("Platform = %q, want %q", info.Platform, want)
	}
	if info.GoVersion != runtime.Version() {
		t.Errorf("GoVersion = %q, want %q", info.GoVersion, runtime.Version())
	}
	if info.GitVersion == "" {
		t.Error("GitVersion is empty; it must always be set (default or -X)")
	}
}

func TestStringIsGitVersion(t *testing.T) {
	old := gitVersion
	defer func() { gitVersion = old }()
	gitVersion = "v1.2.3-alpha.0.5+abcdef0123456"
	if got := Get().String(); got != gitVersion {
		t.Errorf("String() = %q, want %q", got, gitVersion)
	}
}
