// A tiny non-Kubernetes project shaped like kubernetes-sigs/cri-tools, used by
// kdist's tests and demo through its kdist.yaml. No module dependencies.
module example.com/crictl-like

go 1.22
