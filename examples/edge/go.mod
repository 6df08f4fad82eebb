// A tiny project shaped like KubeEdge, used by kdist's tests through its kdist.yaml: a
// hack/lib version script that asks git, binaries in _output/local/bin (no platform in the
// path), and one binary with a C part (cgo). No dependencies, so builds never fetch modules.
module example.com/edgekit

go 1.22
