// Command edgecore is a stub standing in for KubeEdge's edgecore, which links C code (its
// sqlite driver) with cgo. `edgecore version` prints the version and where its checksum
// comes from: "c" when the C part is linked (CGO_ENABLED=1), "go" otherwise.
package main

import (
	"os"
	"strconv"

	"example.com/edgekit/pkg/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		_, _ = os.Stdout.WriteString("edgecore " + version.String() + "\n")
		return
	}
	sum, from := checksum([]byte("edgecore"))
	_, _ = os.Stdout.WriteString("edgecore: checksum " + strconv.FormatUint(uint64(sum), 16) + " (" + from + ")\n")
}
