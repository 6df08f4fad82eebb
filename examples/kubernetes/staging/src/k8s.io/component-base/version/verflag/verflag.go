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

// Package verflag is a much smaller stand-in for
// k8s.io/component-base/version/verflag: it gives every example program the
// same --version behaviour without pulling in fmt or a flag library, so the
// binaries stay small and quick to build.
package verflag

import (
	"io"
	"os"

	"k8s.io/kubernetes/staging/src/k8s.io/component-base/version"
)

// Run handles the command line of an example program and returns its exit
// code:
//
//	--version, -version, --version=true   prints "<name> <gitVersion>"
//	--version=raw                         prints every version field
//	-h, --help                            prints the summary
//	anything else                         prints the summary and the version
func Run(name, summary string, args []string, out io.Writer) int {
	info := version.Get()
	for _, arg := range args {
		switch arg {
		case "--version", "-version", "--version=true", "-version=true":
			write(out, name+" "+info.GitVersion+"\n")
			return 0
		case "--version=raw", "-version=raw":
			write(out, raw(name, info))
			return 0
		case "-h", "--help", "-help":
			write(out, name+": "+summary+"\n")
			return 0
		}
	}
	write(out, name+": "+summary+"\n"+name+" "+info.GitVersion+"\n")
	return 0
}

// Main runs the program named name with os.Args and exits.
func Main(name, summary string) {
	os.Exit(Run(name, summary, os.Args[1:], os.Stdout))
}

func raw(name string, info version.Info) string {
	return name + "\n" +
		"gitVersion: " + info.GitVersion + "\n" +
		"gitCommit: " + info.GitCommit + "\n" +
		"gitTreeState: " + info.GitTreeState + "\n" +
		"buildDate: " + info.BuildDate + "\n" +
		"gitMajor: " + info.Major + "\n" +
		"gitMinor: " + info.Minor + "\n" +
		"goVersion: " + info.GoVersion + "\n" +
		"compiler: " + info.Compiler + "\n" +
		"platform: " + info.Platform + "\n"
}

func write(out io.Writer, s string) {
	_, _ = io.WriteString(out, s)
}
