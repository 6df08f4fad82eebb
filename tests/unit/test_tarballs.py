"""Tests for kdist.packaging.tarballs: release tarball layouts, determinism and checksums."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from kdist.config.kubernetes import classes_for, expected_binaries, tarball_names
from kdist.errors import PackageError
from kdist.model import Layout, Platform, VersionInfo, parse_platform_list
from kdist.packaging.tarballs import (
    PackageSpec,
    common_tarballs,
    expected_tarballs,
    platform_tarballs,
    write_checksums,
)

EPOCH = 1_690_000_000
PLATFORMS = parse_platform_list("linux/amd64,linux/arm64,windows/amd64,linux/386,darwin/arm64")
LINUX_AMD64 = Platform("linux", "amd64")

# The reference layout (reference §6.2), written out independently of kdist.config.kubernetes.
CLIENT = ("kubectl", "kubectl-convert")
NODE = ("kube-log-runner", "kube-proxy", "kubeadm", "kubelet")
SERVER = (
    "apiextensions-apiserver",
    "kube-aggregator",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-log-runner",
    "kube-proxy",
    "kube-scheduler",
    "kubeadm",
    "kubelet",
    "mounter",
)
TEST = ("e2e.test", "ginkgo", "go-runner")
TEST_SERVER = ("e2e_node.test", "kubemark")

SOURCE_FILES = {
    "LICENSES/LICENSE": "Apache-2.0\n",
    "LICENSES/vendor/github.com/foo/bar/LICENSE": "MIT\n",
    "README.md": "# Kubernetes\n",
    "go.mod": "module k8s.io/kubernetes\n",
    ".gitignore": "_output\n",
    ".config/thing": "x\n",
    ".gsutil/x": "x\n",
    "cmd/kubelet/kubelet.go": "package main\n",
    "docs/OWNERS": "approvers: []\n",
    "cluster/get-kube-binaries.sh": "#!/bin/sh\n",
    "cluster/editor-backup~": "cruft\n",
    "cluster/gce/gci/configure-helper.sh": "#!/bin/bash\n# helper\n",
    "cluster/gce/gci/configure-kubeapiserver.sh": "#!/bin/bash\n",
    "cluster/gce/gci/health-monitor.sh": "#!/bin/bash\n",
    "cluster/gce/gci/mounter/mounter.go": "package main\n",
    "cluster/gce/manifests/kube-proxy.manifest": "proxy\n",
    "cluster/gce/manifests/cluster-autoscaler.manifest": "ca\n",
    "cluster/gce/manifests/etcd.manifest": "etcd\n",
    "cluster/gce/manifests/kube-scheduler.manifest": "sched\n",
    "cluster/gce/manifests/kube-apiserver.manifest": "apiserver\n",
    "cluster/gce/manifests/konnectivity-server.yaml": "konn\n",
    "cluster/gce/manifests/abac-authz-policy.jsonl": "{}\n",
    "cluster/gce/manifests/cloud-controller-manager.manifest": "ccm\n",
    "cluster/gce/manifests/kube-controller-manager.manifest": "kcm\n",
    "cluster/gce/manifests/kube-addon-manager.yaml": "addon-manager\n",
    "cluster/gce/manifests/glbc.manifest": "glbc\n",
    "cluster/gce/manifests/internal-etcd.manifest": "internal\n",
    "cluster/gce/manifests/not-listed.manifest": "left out\n",
    "cluster/addons/dns/coredns/coredns.yaml.in": "generic coredns\n",
    "cluster/addons/dns/coredns/Makefile": "left out\n",
    "cluster/addons/dns/demo-dns.yaml": "demo, left out\n",
    "cluster/addons/metrics/metrics.json": "{}\n",
    "cluster/addons/metrics/rules.jsonl": "left out\n",
    "cluster/addons/README.md": "left out\n",
    "cluster/gce/addons/dns/coredns/coredns.yaml.in": "gce coredns wins\n",
    "cluster/gce/addons/gce-only/policy.yaml": "gce\n",
    "test/images/agnhost/Dockerfile": "FROM scratch\n",
    "test/images/agnhost/.DS_Store": "cruft\n",
    "test/e2e/testing-manifests/storage/pod.yaml": "pod\n",
    "test/e2e/e2e_test.go": "package e2e\n",
    "test/kubemark/start-kubemark.sh": "#!/bin/sh\n",
    "hack/e2e-internal/e2e-up.sh": "#!/bin/sh\n",
    "hack/get-build.sh": "#!/bin/sh\n",
    "hack/ginkgo-e2e.sh": "#!/bin/sh\n",
    "hack/lib/version.sh": "#!/bin/sh\n",
    "hack/lib/util.sh": "#!/bin/sh\n",
    "hack/verify-all.sh": "#!/bin/sh\n",
    "_output/local/leftover": "build output\n",
}

MANIFEST_MEMBERS = {
    "kubernetes/",
    "kubernetes/gci-trusty/",
    "kubernetes/gci-trusty/kube-proxy.manifest",
    "kubernetes/gci-trusty/cluster-autoscaler.manifest",
    "kubernetes/gci-trusty/etcd.manifest",
    "kubernetes/gci-trusty/kube-scheduler.manifest",
    "kubernetes/gci-trusty/kube-apiserver.manifest",
    "kubernetes/gci-trusty/konnectivity-server.yaml",
    "kubernetes/gci-trusty/abac-authz-policy.jsonl",
    "kubernetes/gci-trusty/cloud-controller-manager.manifest",
    "kubernetes/gci-trusty/kube-controller-manager.manifest",
    "kubernetes/gci-trusty/kube-addon-manager.yaml",
    "kubernetes/gci-trusty/glbc.manifest",
    "kubernetes/gci-trusty/internal-etcd.manifest",
    "kubernetes/gci-trusty/gci-configure-helper.sh",
    "kubernetes/gci-trusty/configure-kubeapiserver.sh",
    "kubernetes/gci-trusty/health-monitor.sh",
    "kubernetes/gci-trusty/dns/",
    "kubernetes/gci-trusty/dns/coredns/",
    "kubernetes/gci-trusty/dns/coredns/coredns.yaml.in",
    "kubernetes/gci-trusty/metrics/",
    "kubernetes/gci-trusty/metrics/metrics.json",
    "kubernetes/gci-trusty/gce-only/",
    "kubernetes/gci-trusty/gce-only/policy.yaml",
}
LICENSE_MEMBERS = {
    "kubernetes/LICENSES/",
    "kubernetes/LICENSES/LICENSE",
    "kubernetes/LICENSES/vendor/",
    "kubernetes/LICENSES/vendor/github.com/",
    "kubernetes/LICENSES/vendor/github.com/foo/",
    "kubernetes/LICENSES/vendor/github.com/foo/bar/",
    "kubernetes/LICENSES/vendor/github.com/foo/bar/LICENSE",
}


def _members(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return [m.name + ("/" if m.isdir() else "") for m in tar.getmembers()]


def _read(path: Path, member: str) -> bytes:
    with tarfile.open(path) as tar:
        handle = tar.extractfile(member)
        assert handle is not None
        return handle.read()


def _bins(prefix: str, names: tuple[str, ...], platform: Platform) -> set[str]:
    return {f"{prefix}/{n}{platform.exe_suffix}" for n in names}


def _dirs(*paths: str) -> set[str]:
    return {p + "/" for p in paths}


def _source_members(prefix: str, rel: str) -> set[str]:
    """What copying source `rel` (file or tree, cruft removed) under `prefix` yields."""
    out: set[str] = set()
    for path in SOURCE_FILES:
        if path != rel and not path.startswith(rel + "/"):
            continue
        if path.endswith("~") or "/.DS" in path:
            continue
        parts = path.split("/")
        base = len(rel.split("/"))
        for depth in range(base, len(parts)):
            out.add(f"{prefix}/" + "/".join(parts[:depth]) + "/")
        out.add(f"{prefix}/{path}")
    return out


def _make_source(root: Path) -> Path:
    for rel, text in SOURCE_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel.endswith(".sh"):
            path.chmod(0o755)
    return root


def _make_bins(bin_dir: Path, platforms: tuple[Platform, ...]) -> Path:
    for platform in platforms:
        directory = bin_dir / platform.os / platform.arch
        directory.mkdir(parents=True)
        for name in expected_binaries(platform):
            (directory / name).write_bytes(f"{platform} {name}\n".encode() * 50)
            (directory / name).chmod(0o755)
    return bin_dir


def _spec(tmp_path: Path, **kw: object) -> PackageSpec:
    args: dict[str, object] = {
        "layout": Layout.KUBERNETES,
        "name": "kubernetes",
        "source": tmp_path / "src",
        "bin_dir": tmp_path / "src" / "_output" / "dockerized" / "bin",
        "platforms": PLATFORMS,
        "version": VersionInfo("v1.31.0-alpha.1+abc", tree_state="dirty", source_date_epoch=EPOCH),
        "jobs": 2,
    }
    args.update(kw)
    return PackageSpec(**args)  # type: ignore[arg-type]


@pytest.fixture
def spec(tmp_path: Path) -> PackageSpec:
    """Make a kubernetes spec with a fake source tree and binaries for PLATFORMS."""
    made = _spec(tmp_path)
    _make_source(made.source)
    _make_bins(made.bin_dir, PLATFORMS)
    return made


@pytest.fixture
def release(spec: PackageSpec, tmp_path: Path) -> Path:
    """Package the whole release of `spec` and return its release-tars directory."""
    dest = tmp_path / "release-tars"
    common_tarballs(spec, dest)
    for platform in spec.platforms:
        platform_tarballs(spec, platform, dest)
    return dest


def test_expected_tarballs_are_kubernetes_tarball_names(spec: PackageSpec, release: Path) -> None:
    """The release holds exactly the tarballs kdist.config.kubernetes.tarball_names lists."""
    expected = tarball_names(classes_for(PLATFORMS))
    assert expected_tarballs(spec) == expected
    assert sorted(p.name for p in release.glob("*.tar.gz")) == list(expected)
    assert not list(release.glob("*.tmp"))
    assert len(expected) == 3 + 5 + 3 + 2 + 4 + 1  # common, client, node, server, test, portable


def test_common_tarballs_returns_the_four_paths(spec: PackageSpec, tmp_path: Path) -> None:
    """common_tarballs writes src, manifests, test-portable and kubernetes.tar.gz."""
    dest = tmp_path / "out"
    names = [p.name for p in common_tarballs(spec, dest)]
    assert names == [
        "kubernetes-src.tar.gz",
        "kubernetes-manifests.tar.gz",
        "kubernetes-test-portable.tar.gz",
        "kubernetes.tar.gz",
    ]


def test_client_tarball_layout(release: Path) -> None:
    """A client-only platform gets kubernetes/client/bin/{kubectl,kubectl-convert} only."""
    p = Platform("linux", "386")
    assert sorted(release.glob("*linux-386*")) == [release / "kubernetes-client-linux-386.tar.gz"]
    want = _dirs("kubernetes", "kubernetes/client", "kubernetes/client/bin")
    want |= _bins("kubernetes/client/bin", CLIENT, p)
    assert set(_members(release / "kubernetes-client-linux-386.tar.gz")) == want
    data = _read(release / "kubernetes-client-linux-386.tar.gz", "kubernetes/client/bin/kubectl")
    assert data == b"linux/386 kubectl\n" * 50


def test_node_tarball_layout_windows(release: Path) -> None:
    """The windows node tarball has .exe node and client binaries, LICENSES and the src."""
    p = Platform("windows", "amd64")
    tarball = release / "kubernetes-node-windows-amd64.tar.gz"
    want = _dirs("kubernetes", "kubernetes/node", "kubernetes/node/bin") | LICENSE_MEMBERS
    want |= _bins("kubernetes/node/bin", NODE + CLIENT, p)
    want.add("kubernetes/kubernetes-src.tar.gz")
    assert set(_members(tarball)) == want
    embedded = _read(tarball, "kubernetes/kubernetes-src.tar.gz")
    assert embedded == (release / "kubernetes-src.tar.gz").read_bytes()
    assert not (release / "kubernetes-server-windows-amd64.tar.gz").exists()


def test_server_tarball_layout(release: Path) -> None:
    """The server tarball has server+client binaries, an empty addons/, LICENSES and src."""
    tarball = release / "kubernetes-server-linux-amd64.tar.gz"
    want = _dirs("kubernetes", "kubernetes/server", "kubernetes/server/bin", "kubernetes/addons")
    want |= LICENSE_MEMBERS | _bins("kubernetes/server/bin", SERVER + CLIENT, LINUX_AMD64)
    want.add("kubernetes/kubernetes-src.tar.gz")
    members = _members(tarball)
    assert set(members) == want
    assert len(members) == len(want)
    assert not [m for m in members if m.endswith((".tar", ".docker_tag"))]
    with tarfile.open(tarball) as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
    assert modes["kubernetes/server/bin/kubelet"] == 0o755
    assert modes["kubernetes/LICENSES/LICENSE"] == 0o644


def test_test_tarballs_add_server_binaries_only_on_server_platforms(release: Path) -> None:
    """Only the test tarballs of server platforms have kubemark and e2e_node.test."""
    for p in (LINUX_AMD64, Platform("linux", "arm64")):
        want = _dirs("kubernetes", "kubernetes/test", "kubernetes/test/bin")
        want |= _bins("kubernetes/test/bin", TEST + TEST_SERVER, p)
        assert set(_members(release / f"kubernetes-test-{p.dashed}.tar.gz")) == want
    for p in (Platform("darwin", "arm64"), Platform("windows", "amd64")):
        want = _dirs("kubernetes", "kubernetes/test", "kubernetes/test/bin")
        want |= _bins("kubernetes/test/bin", TEST, p)
        assert set(_members(release / f"kubernetes-test-{p.dashed}.tar.gz")) == want


def test_manifests_tarball_layout(release: Path) -> None:
    """gci-trusty/ holds the listed manifests, renamed scripts and the merged addons."""
    tarball = release / "kubernetes-manifests.tar.gz"
    assert set(_members(tarball)) == MANIFEST_MEMBERS
    coredns = _read(tarball, "kubernetes/gci-trusty/dns/coredns/coredns.yaml.in")
    assert coredns == b"gce coredns wins\n"
    helper = _read(tarball, "kubernetes/gci-trusty/gci-configure-helper.sh")
    assert helper == b"#!/bin/bash\n# helper\n"


def test_manifests_include_optional_gke_helper(spec: PackageSpec, tmp_path: Path) -> None:
    """gke-internal-configure-helper.sh is copied when the source has it."""
    (spec.source / "cluster/gce/gci/gke-internal-configure-helper.sh").write_text("gke\n")
    dest = tmp_path / "out"
    common_tarballs(spec, dest)
    members = set(_members(dest / "kubernetes-manifests.tar.gz"))
    assert members == MANIFEST_MEMBERS | {"kubernetes/gci-trusty/gke-internal-configure-helper.sh"}


def test_full_tarball_layout(release: Path) -> None:
    """The final tarball has READMEs, cluster/, manifests, hack/lib, docs and version."""
    tarball = release / "kubernetes.tar.gz"
    want = _dirs("kubernetes", "kubernetes/client", "kubernetes/server")
    want |= {"kubernetes/client/README", "kubernetes/server/README", "kubernetes/version"}
    want |= {"kubernetes/server/kubernetes-manifests.tar.gz", "kubernetes/README.md"}
    want |= _source_members("kubernetes", "cluster") | _source_members("kubernetes", "hack/lib")
    want |= _source_members("kubernetes", "docs") | LICENSE_MEMBERS
    want.add("kubernetes/hack/")
    assert set(_members(tarball)) == want
    assert "kubernetes/cluster/editor-backup~" not in want  # clean_cruft
    assert _read(tarball, "kubernetes/version") == b"v1.31.0-alpha.1+abc\n"
    assert _read(tarball, "kubernetes/client/README").startswith(
        b"Client binaries are no longer included"
    )
    assert _read(tarball, "kubernetes/server/README").endswith(
        b"Run cluster/get-kube-binaries.sh to download client and server binaries.\n"
    )
    manifests = _read(tarball, "kubernetes/server/kubernetes-manifests.tar.gz")
    assert manifests == (release / "kubernetes-manifests.tar.gz").read_bytes()


def test_portable_test_tarball_layout(release: Path) -> None:
    """The portable tarball has test/images and the KUBE_TEST_PORTABLE paths, cruft removed."""
    want = _dirs("kubernetes", "kubernetes/test", "kubernetes/hack", "kubernetes/test/e2e")
    for rel in (
        "test/images",
        "test/e2e/testing-manifests",
        "test/kubemark",
        "hack/e2e-internal",
        "hack/get-build.sh",
        "hack/ginkgo-e2e.sh",
        "hack/lib",
    ):
        want |= _source_members("kubernetes", rel)
    assert set(_members(release / "kubernetes-test-portable.tar.gz")) == want
    assert "kubernetes/test/images/agnhost/.DS_Store" not in want


def test_src_tarball_of_dirty_tree(release: Path) -> None:
    """A dirty tree is tarred under kubernetes/ without _*, .git*, .config* and .gsutil*."""
    members = set(_members(release / "kubernetes-src.tar.gz"))
    want: set[str] = {"kubernetes/"}
    for top in ("LICENSES", "README.md", "go.mod", "cmd", "docs", "cluster", "test", "hack"):
        want |= _source_members("kubernetes", top)
    want |= {"kubernetes/cluster/editor-backup~", "kubernetes/test/images/agnhost/.DS_Store"}
    assert members == want


def test_src_tarball_of_clean_git_tree(spec: PackageSpec, tmp_path: Path) -> None:
    """A clean tree's src tarball is `git archive --format=tar HEAD`, recompressed by kdist."""
    src = spec.source
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_AUTHOR_DATE": "@1690000000 +0000",
        "GIT_COMMITTER_DATE": "@1690000000 +0000",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    for argv in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],  # .gitignore keeps _output out
        ["git", "commit", "-q", "-m", "release"],
    ):
        subprocess.run(argv, cwd=src, check=True, env=env)
    (src / "untracked.txt").write_text("not in git archive\n")
    clean = _spec(
        tmp_path, version=VersionInfo("v1.31.0", tree_state="clean", source_date_epoch=EPOCH)
    )
    dest = tmp_path / "clean"
    common_tarballs(clean, dest)
    data = (dest / "kubernetes-src.tar.gz").read_bytes()
    assert data[:10] == bytes.fromhex("1f8b0800000000000003")
    expected = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD"],
        cwd=src,
        check=True,
        capture_output=True,
        env=env,
    ).stdout
    assert gzip.decompress(data) == expected
    members = _members(dest / "kubernetes-src.tar.gz")
    assert "README.md" in members and "untracked.txt" not in members
    assert not any(m.startswith("kubernetes/") for m in members)
    common_tarballs(clean, tmp_path / "again")
    assert (tmp_path / "again" / "kubernetes-src.tar.gz").read_bytes() == data


def test_node_and_server_need_the_src_tarball(spec: PackageSpec, tmp_path: Path) -> None:
    """platform_tarballs before common_tarballs fails for a node platform with a clear error."""
    with pytest.raises(PackageError, match=r"kubernetes-src\.tar\.gz is missing.*common_tarballs"):
        platform_tarballs(spec, LINUX_AMD64, tmp_path / "empty")
    # A client/test-only platform needs no src tarball.
    out = platform_tarballs(spec, Platform("darwin", "arm64"), tmp_path / "empty")
    assert [p.name for p in out] == [
        "kubernetes-client-darwin-arm64.tar.gz",
        "kubernetes-test-darwin-arm64.tar.gz",
    ]


def test_missing_binary_names_platform_and_file(spec: PackageSpec, release: Path) -> None:
    """A missing binary raises PackageError naming the platform and the file."""
    (spec.bin_dir / "linux" / "arm64" / "kubelet").unlink()
    with pytest.raises(PackageError, match=r"linux/arm64: .*kubelet \(missing\)"):
        platform_tarballs(spec, Platform("linux", "arm64"), release)


def test_symlinked_binary_is_refused(spec: PackageSpec, release: Path, tmp_path: Path) -> None:
    """A binary that is a symlink (e.g. out of the tree) is refused, not followed."""
    target = tmp_path / "outside"
    target.write_text("secret")
    kubectl = spec.bin_dir / "linux" / "386" / "kubectl"
    kubectl.unlink()
    kubectl.symlink_to(target)
    with pytest.raises(PackageError, match=r"linux/386: .*kubectl \(a symlink"):
        platform_tarballs(spec, Platform("linux", "386"), release)


def test_symlinked_platform_dir_is_refused(
    spec: PackageSpec, release: Path, tmp_path: Path
) -> None:
    """bin_dir/<os>/<arch> being a symlink is refused."""
    arch_dir = spec.bin_dir / "darwin" / "arm64"
    arch_dir.rename(tmp_path / "elsewhere")
    arch_dir.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PackageError, match="symlink"):
        platform_tarballs(spec, Platform("darwin", "arm64"), release)


def test_junk_in_binaries_dir_is_ignored(spec: PackageSpec, release: Path) -> None:
    """Extra files in the binaries directory do not reach the kubernetes tarballs."""
    junk_dir = spec.bin_dir / "linux" / "386"
    (junk_dir / "junk.txt").write_text("junk")
    (junk_dir / "passwd").symlink_to("/etc/passwd")
    before = (release / "kubernetes-client-linux-386.tar.gz").read_bytes()
    platform_tarballs(spec, Platform("linux", "386"), release)
    assert (release / "kubernetes-client-linux-386.tar.gz").read_bytes() == before


def test_platform_outside_release_is_refused(spec: PackageSpec, release: Path) -> None:
    """Packing a platform the release does not have raises PackageError."""
    with pytest.raises(PackageError, match="not a platform of this release"):
        platform_tarballs(spec, Platform("linux", "s390x"), release)


def test_platform_in_no_class_has_no_tarballs(tmp_path: Path) -> None:
    """A release platform in no Kubernetes list (linux/riscv64) gets no tarballs."""
    riscv = Platform("linux", "riscv64")
    made = _spec(tmp_path, platforms=(riscv,))
    assert platform_tarballs(made, riscv, tmp_path / "out") == []
    assert "riscv64" not in " ".join(expected_tarballs(made))


def test_release_is_byte_reproducible(spec: PackageSpec, release: Path, tmp_path: Path) -> None:
    """A second release with other jobs and threads per platform has identical bytes."""
    other = dataclasses.replace(spec, jobs=1)
    dest = tmp_path / "second"
    common_tarballs(other, dest)
    errors: list[BaseException] = []

    def pack(platform: Platform) -> None:
        try:
            platform_tarballs(other, platform, dest)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pack, args=(p,)) for p in PLATFORMS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for tarball in sorted(release.glob("*.tar.gz")):
        assert (dest / tarball.name).read_bytes() == tarball.read_bytes(), tarball.name


def test_checksum_files(release: Path) -> None:
    """SHA256SUMS/SHA512SUMS list every tarball sorted; every file gets bare .sha256/.sha512."""
    write_checksums(release)
    tarballs = sorted(p.name for p in release.glob("*.tar.gz"))
    for algo, sums_name in (("sha256", "SHA256SUMS"), ("sha512", "SHA512SUMS")):
        text = (release / sums_name).read_text()
        assert not text.endswith("\n")
        lines = text.split("\n")
        assert [line.split("  ", 1)[1] for line in lines] == tarballs
        for line in lines:
            digest, name = line.split("  ")
            assert digest == hashlib.new(algo, (release / name).read_bytes()).hexdigest()
        for name in [*tarballs, "SHA256SUMS", "SHA512SUMS"]:
            sidecar = (release / f"{name}.{algo}").read_text()
            assert sidecar == hashlib.new(algo, (release / name).read_bytes()).hexdigest()
    assert not list(release.glob("*.sha256.sha256"))
    assert not list(release.glob("*.tmp"))


def test_checksums_need_tarballs(tmp_path: Path) -> None:
    """write_checksums on a directory without tarballs raises PackageError."""
    with pytest.raises(PackageError, match="no"):
        write_checksums(tmp_path)


def test_generic_layout(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Generic: <name>-<os>-<arch>.tar.gz of the regular files under <name>/, junk skipped."""
    bin_dir = tmp_path / "out"
    platforms = parse_platform_list("linux/amd64,darwin/arm64")
    for p in platforms:
        d = bin_dir / p.os / p.arch
        (d / "subdir").mkdir(parents=True)
        (d / "tool").write_text(f"tool {p}")
        (d / "tool").chmod(0o755)
        (d / "NOTICE").write_text("notice")
        (d / "escape").symlink_to("/etc/passwd")
    spec = PackageSpec(
        layout=Layout.GENERIC,
        name="mytool",
        source=tmp_path,
        bin_dir=bin_dir,
        platforms=platforms,
        version=VersionInfo("v0.1.0", source_date_epoch=EPOCH),
        jobs=2,
    )
    dest = tmp_path / "dist"
    assert expected_tarballs(spec) == ("mytool-darwin-arm64.tar.gz", "mytool-linux-amd64.tar.gz")
    assert common_tarballs(spec, dest) == []
    with caplog.at_level(logging.WARNING, logger="kdist.packaging.tarballs"):
        out = [p for platform in platforms for p in platform_tarballs(spec, platform, dest)]
    assert sorted(p.name for p in out) == list(expected_tarballs(spec))
    tarball = dest / "mytool-linux-amd64.tar.gz"
    assert _members(tarball) == ["mytool/", "mytool/NOTICE", "mytool/tool"]
    with tarfile.open(tarball) as tar:
        assert {m.name: m.mode for m in tar.getmembers()} == {
            "mytool": 0o755,
            "mytool/NOTICE": 0o644,
            "mytool/tool": 0o755,
        }
    assert "symlink" in caplog.text and "escape" in caplog.text
    write_checksums(dest)
    assert (dest / "SHA256SUMS").read_text().count("\n") == 1


def test_generic_needs_binaries_and_a_safe_name(tmp_path: Path) -> None:
    """Generic: an empty platform directory or an unusable name raises PackageError."""
    (tmp_path / "bin" / "linux" / "amd64").mkdir(parents=True)
    kw = {
        "layout": Layout.GENERIC,
        "source": tmp_path,
        "bin_dir": tmp_path / "bin",
        "platforms": (LINUX_AMD64,),
        "version": VersionInfo("v1"),
    }
    spec = PackageSpec(name="tool", **kw)  # type: ignore[arg-type]
    with pytest.raises(PackageError, match="no binaries"):
        platform_tarballs(spec, LINUX_AMD64, tmp_path / "dist")
    for bad in ("", "../x", "a/b", "-rf"):
        with pytest.raises(PackageError, match="package name"):
            PackageSpec(name=bad, **kw)  # type: ignore[arg-type]


def test_missing_source_path_is_reported(spec: PackageSpec, tmp_path: Path) -> None:
    """A source path a tarball needs (here docs/) missing raises PackageError naming it."""
    (spec.source / "docs" / "OWNERS").unlink()
    (spec.source / "docs").rmdir()
    with pytest.raises(PackageError, match=r"docs is missing.*kubernetes\.tar\.gz"):
        common_tarballs(spec, tmp_path / "out")


def test_clean_tree_that_is_not_git_fails(
    spec: PackageSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tree_state clean on a source that is no git checkout raises PackageError from git."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    clean = dataclasses.replace(spec, version=VersionInfo("v1", tree_state="clean"))
    dest = tmp_path / "out"
    with pytest.raises(PackageError, match="git archive HEAD"):
        common_tarballs(clean, dest)
    assert not (dest / "kubernetes-src.tar.gz").exists()
    assert not (dest / "kubernetes-src.tar.gz.tmp").exists()


def test_dirty_src_leaves_out_dest_inside_the_tree(spec: PackageSpec) -> None:
    """When dest lies inside the source tree, the src tarball does not contain it."""
    dest = spec.source / "release-tars"
    common_tarballs(spec, dest)
    members = _members(dest / "kubernetes-src.tar.gz")
    assert "kubernetes/README.md" in members
    assert not [m for m in members if m.startswith("kubernetes/release-tars")]
