// A tiny non-Kubernetes project shaped like kubernetes-sigs/cri-tools, used by
// kdist's tests and demo through its kdist.yaml. Its one dependency is vendored
// (vendor/example.com/semver), so builds never fetch modules.
module example.com/crictl-like

go 1.22

require example.com/semver v0.2.0
