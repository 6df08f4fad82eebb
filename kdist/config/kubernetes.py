"""What Kubernetes builds for which platform (hack/lib/golang.sh), as pure data and functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kdist.model import Platform, parse_platform_list

SERVER_PLATFORMS = parse_platform_list("linux/amd64,linux/arm64,linux/s390x,linux/ppc64le")
NODE_PLATFORMS = (*SERVER_PLATFORMS, Platform("windows", "amd64"))
CLIENT_PLATFORMS = parse_platform_list(
    "linux/amd64,linux/386,linux/arm,linux/arm64,linux/s390x,linux/ppc64le,"
    "darwin/amd64,darwin/arm64,windows/amd64,windows/386,windows/arm64"
)
TEST_PLATFORMS = parse_platform_list(
    "linux/amd64,linux/arm64,linux/s390x,linux/ppc64le,"
    "darwin/amd64,darwin/arm64,windows/amd64,windows/arm64"
)
TEST_SERVER_PLATFORMS = SERVER_PLATFORMS

SERVER_TARGETS = (
    "cmd/kube-proxy",
    "cmd/kube-apiserver",
    "cmd/kube-controller-manager",
    "cmd/kubelet",
    "cmd/kubeadm",
    "cmd/kube-scheduler",
    "staging/src/k8s.io/component-base/logs/kube-log-runner",
    "staging/src/k8s.io/kube-aggregator",
    "staging/src/k8s.io/apiextensions-apiserver",
    "cluster/gce/gci/mounter",
)
NODE_TARGETS = (
    "cmd/kube-proxy",
    "cmd/kubeadm",
    "cmd/kubelet",
    "staging/src/k8s.io/component-base/logs/kube-log-runner",
)
CLIENT_TARGETS = ("cmd/kubectl", "cmd/kubectl-convert")
TEST_TARGETS = ("ginkgo", "test/e2e/e2e.test", "test/conformance/image/go-runner")
TEST_SERVER_TARGETS = ("cmd/kubemark", "ginkgo", "test/e2e_node/e2e_node.test")
SERVER_IMAGE_BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubectl",
)
TEST_PORTABLE = (
    "test/e2e/testing-manifests",
    "test/kubemark",
    "hack/e2e-internal",
    "hack/get-build.sh",
    "hack/ginkgo-e2e.sh",
    "hack/lib",
)


def binary_names(targets: Iterable[str], platform: Platform) -> tuple[str, ...]:
    """Basenames of `targets` as built for `platform` (`.exe` on Windows)."""
    return tuple(t.rsplit("/", 1)[-1] + platform.exe_suffix for t in targets)


@dataclass(frozen=True)
class Classes:
    """The platform lists of one release after KUBE_BUILD_PLATFORMS narrowing."""

    server: tuple[Platform, ...]
    node: tuple[Platform, ...]
    client: tuple[Platform, ...]
    test: tuple[Platform, ...]

    @property
    def all(self) -> tuple[Platform, ...]:
        """Every platform any class builds, in client-list order (a superset of the others)."""
        return tuple(dict.fromkeys((*self.client, *self.server, *self.node, *self.test)))


def _narrow(supported: Sequence[Platform], wanted: Sequence[Platform]) -> tuple[Platform, ...]:
    # Like `sort | uniq -d` in kube::golang::setup_platforms: intersect, sorted.
    return tuple(sorted(set(supported) & set(wanted), key=str))


def classes_for(wanted: Sequence[Platform] | None = None) -> Classes:
    """The class lists for a release of `wanted` platforms (all supported ones when None)."""
    if wanted is None:
        return Classes(SERVER_PLATFORMS, NODE_PLATFORMS, CLIENT_PLATFORMS, TEST_PLATFORMS)
    return Classes(
        server=_narrow(SERVER_PLATFORMS, wanted),
        node=_narrow(NODE_PLATFORMS, wanted),
        client=_narrow(CLIENT_PLATFORMS, wanted),
        test=_narrow(TEST_PLATFORMS, wanted),
    )


def expected_binaries(platform: Platform) -> tuple[str, ...]:
    """Every binary `make cross KUBE_BUILD_PLATFORMS=<platform>` leaves for that platform."""
    targets: list[str] = []
    if platform in SERVER_PLATFORMS:
        targets += SERVER_TARGETS
    if platform in NODE_PLATFORMS:
        targets += NODE_TARGETS
    if platform in CLIENT_PLATFORMS:
        targets += CLIENT_TARGETS
    if platform in TEST_PLATFORMS:
        targets += TEST_TARGETS
    if platform in TEST_SERVER_PLATFORMS:
        targets += TEST_SERVER_TARGETS
    return tuple(sorted(set(binary_names(targets, platform))))


def tarball_names(classes: Classes) -> tuple[str, ...]:
    """The file names `make package-tarballs` writes to release-tars for these classes."""
    names = ["kubernetes-src.tar.gz", "kubernetes-manifests.tar.gz", "kubernetes.tar.gz"]
    names += [f"kubernetes-client-{p.dashed}.tar.gz" for p in classes.client]
    names += [f"kubernetes-node-{p.dashed}.tar.gz" for p in classes.node]
    names += [f"kubernetes-server-{p.dashed}.tar.gz" for p in classes.server]
    names += [f"kubernetes-test-{p.dashed}.tar.gz" for p in classes.test]
    names.append("kubernetes-test-portable.tar.gz")
    return tuple(sorted(names))


KUBE_CROSS_VERSION_FILE = "build/build-image/cross/VERSION"
KUBE_BASE_IMAGE_REGISTRY = "registry.k8s.io/build-image"


def kube_cross_image(version_file: str | None, env: Mapping[str, str]) -> str:
    """Upstream's build image: `$KUBE_CROSS_IMAGE:$KUBE_CROSS_VERSION` (build/common.sh).

    `version_file` is the text of build/build-image/cross/VERSION (None when the tree has none);
    KUBE_BASE_IMAGE_REGISTRY, KUBE_CROSS_IMAGE and KUBE_CROSS_VERSION override, as upstream.
    Raises ValueError when no version is known.
    """
    registry = env.get("KUBE_BASE_IMAGE_REGISTRY") or KUBE_BASE_IMAGE_REGISTRY
    image = env.get("KUBE_CROSS_IMAGE") or f"{registry}/kube-cross"
    version = env.get("KUBE_CROSS_VERSION") or (version_file or "").strip()
    if not version:
        msg = f"no {KUBE_CROSS_VERSION_FILE} in the tree and KUBE_CROSS_VERSION is not set"
        raise ValueError(msg)
    return f"{image}:{version}"
