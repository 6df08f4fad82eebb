// Command keadm is a stub standing in for KubeEdge's keadm (the installer).
// `keadm version` prints the version hack/lib/version.sh stamped.
package main

import (
	"os"

	"example.com/edgekit/pkg/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		_, _ = os.Stdout.WriteString("keadm " + version.String() + "\n")
		return
	}
	_, _ = os.Stdout.WriteString("keadm: KubeEdge installer (kdist example stub)\n")
}
