// A tiny stand-in for k8s.io/kubernetes, used by kdist's tests and demo.
// It has no external module dependencies on purpose: build hosts have no
// module proxy, and the build scripts set GOPROXY=off and GOTOOLCHAIN=local.
// The staging/src/k8s.io/* directories are plain packages of this one module
// (real Kubernetes makes them separate modules wired up with replace
// directives; that is not needed here).
module k8s.io/kubernetes

go 1.22
