"""Kubernetes fidelity on the farm: make-target equivalents, reproducibility, version, delegation."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kdist.cli.commands import tree_id
from kdist.testing.devfarm import Farm
from tests.helpers import SCRATCH_IMAGES, git, kdist, make_project, release

pytestmark = pytest.mark.e2e

PAIR = "linux/amd64,linux/arm64"


def _sums(out: Path) -> str:
    return (out / "release-tars/SHA256SUMS").read_text()


def test_two_releases_are_byte_identical_across_tz_and_umask(
    farm: Farm, k8s_source: Path, tmp_path: Path
) -> None:
    """Two releases into separate folders, with another TZ and umask, give identical tarball bytes."""
    first = release(
        k8s_source, hosts=farm.inventory_path, out=tmp_path / "a", platforms=PAIR, json=False
    )
    assert first.code == 0, first.stderr + first.stdout[-2000:]
    second = subprocess.run(
        [
            "sh",
            "-c",
            'umask 077; exec "$@"',
            "sh",
            "python3",
            "-m",
            "kdist",
            "release",
            "--hosts",
            str(farm.inventory_path),
            "--source",
            str(k8s_source),
            "--output",
            str(tmp_path / "b"),
            "--platforms",
            PAIR,
            "--skip-tests",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "Asia/Tokyo"},
        check=False,
    )
    assert second.returncode == 0, second.stderr + second.stdout[-2000:]
    assert _sums(tmp_path / "a") == _sums(tmp_path / "b")
    # client, node, server and test per platform, plus src, manifests, portable and full;
    # and one SBOM per platform (byte-reproducible too).
    lines = _sums(tmp_path / "a").splitlines()
    assert len([line for line in lines if line.endswith(".tar.gz")]) == 12
    assert len([line for line in lines if line.endswith(".spdx.json")]) == 2
    for sha in (tmp_path / "a/release-tars").glob("*.sha256"):
        assert sha.read_bytes() == (tmp_path / "b/release-tars" / sha.name).read_bytes()


def test_binary_reports_the_head_node_version(farm: Farm, k8s_source: Path, tmp_path: Path) -> None:
    """kubectl built on a farm host prints the version the head node computed from git."""
    ran = kdist(
        "build",
        "--hosts",
        farm.inventory_path,
        "--source",
        k8s_source,
        "--platform",
        "linux/amd64",
        "--host",
        "h1",
        "cmd/kubectl",
        "--json",
    )
    assert ran.code == 0, ran.stderr
    binary = k8s_source / "_output/local/bin/linux/amd64/kubectl"
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "kubectl v1.3.0"


def test_dirty_tree_version_and_every_binary_agrees(farm: Farm, tmp_path: Path) -> None:
    """A dirty tree one commit past a tag is stamped vX.Y.Z-1+<hash>-dirty in every binary."""
    source = make_project("kubernetes", tmp_path / "kubernetes", tag="v1.4.0-alpha.1")
    (source / "README.md").write_text("changed\n")
    git(source, "commit", "-qam", "one more")
    (source / "docs/extra.md").write_text("untracked\n")
    ran = release(source, hosts=farm.inventory_path, out=tmp_path / "out", platforms=PAIR)
    assert ran.code == 0, ran.stderr + ran.stdout[-2000:]
    version = ran.json["version"]
    head = git(source, "rev-parse", "HEAD").strip()[:14]
    assert version == f"v1.4.0-alpha.1.1+{head}-dirty"
    for binary in (tmp_path / "out/dockerized/bin").glob("*/*/*"):
        assert version.encode() in binary.read_bytes(), binary
    full = subprocess.run(
        ["tar", "xzOf", str(tmp_path / "out/release-tars/kubernetes.tar.gz"), "kubernetes/version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert full.stdout == version + "\n"


def test_quick_release_builds_only_the_head_platform(
    farm: Farm, k8s_source: Path, tmp_path: Path
) -> None:
    """quick-release skips the tests and builds linux/<head arch> only (KUBE_FASTBUILD)."""
    ran = kdist(
        "quick-release",
        "--hosts",
        farm.inventory_path,
        "--source",
        k8s_source,
        "--output",
        tmp_path / "out",
        "--json",
    )
    assert ran.code == 0, ran.stderr + ran.stdout[-2000:]
    assert [s["platform"] for s in ran.json["slices"]] == ["linux/amd64"]
    assert ran.json["tests"] is None
    names = sorted(p.name for p in (tmp_path / "out/release-tars").glob("*.tar.gz"))
    assert names == sorted(
        [
            "kubernetes-client-linux-amd64.tar.gz",
            "kubernetes-node-linux-amd64.tar.gz",
            "kubernetes-server-linux-amd64.tar.gz",
            "kubernetes-test-linux-amd64.tar.gz",
            "kubernetes-src.tar.gz",
            "kubernetes-manifests.tar.gz",
            "kubernetes.tar.gz",
            "kubernetes-test-portable.tar.gz",
        ]
    )


def test_release_runs_unit_tests_once_before_packaging(
    farm: Farm, k8s_source: Path, tmp_path: Path
) -> None:
    """A release runs `make test` on one host and reports it; the log is kept."""
    ran = release(
        k8s_source,
        hosts=farm.inventory_path,
        out=tmp_path / "out",
        platforms="linux/s390x",
        skip_tests=False,
    )
    assert ran.code == 0, ran.stderr + ran.stdout[-2000:]
    assert ran.json["tests"]["ok"] is True
    assert ran.json["tests"]["host"] == "h3"
    assert "ok" in (tmp_path / "out/logs/test.log").read_text()


def test_failing_unit_tests_block_the_publish(farm: Farm, k8s_source: Path, tmp_path: Path) -> None:
    """When the unit tests fail the release exits 1 and publishes nothing."""
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        'layout: kubernetes\ntest: sh -c "echo a test failed; exit 3"\n' + SCRATCH_IMAGES
    )
    ran = release(
        k8s_source,
        "--profile",
        profile,
        hosts=farm.inventory_path,
        out=tmp_path / "out",
        platforms="linux/amd64",
        skip_tests=False,
    )
    assert ran.code == 1
    assert "unit tests failed" in ran.json["title"]
    assert not (tmp_path / "out/release-tars").exists()


def test_package_repacks_the_same_bytes(farm: Farm, k8s_source: Path, tmp_path: Path) -> None:
    """`kdist package` on a release's binaries reproduces the release's tarballs byte for byte."""
    out = tmp_path / "out"
    ran = release(
        k8s_source, hosts=farm.inventory_path, out=out, platforms="linux/arm64", json=False
    )
    assert ran.code == 0, ran.stderr
    before = _sums(out)
    (out / "release-tars/kubernetes-src.tar.gz").unlink()
    again = kdist("package", "--source", k8s_source, "--output", out)
    assert again.code == 0, again.stderr
    assert _sums(out) == before


def test_package_without_binaries_is_a_clear_error(k8s_source: Path, tmp_path: Path) -> None:
    """`kdist package` with nothing built says where it looked (exit 2)."""
    ran = kdist("package", "--source", k8s_source, "--output", tmp_path / "empty")
    assert ran.code == 2
    assert "dockerized/bin" in ran.stderr


def test_clean_remote_removes_local_output_and_host_workdirs(farm: Farm, tmp_path: Path) -> None:
    """`kdist clean --remote` removes SOURCE/_output and this tree's workdir on every host."""
    source = make_project("kubernetes", tmp_path / "kubernetes")
    ran = kdist(
        "build",
        "--hosts",
        farm.inventory_path,
        "--source",
        source,
        "--platform",
        "linux/arm64",
        "--host",
        "h2",
        "cmd/kubectl",
    )
    assert ran.code == 0, ran.stderr
    workdir = farm.host("h2").workdir / tree_id(source)
    assert (workdir / "README.md").is_file()
    assert (source / "_output").exists()
    dry = kdist("clean", "--remote", "--hosts", farm.inventory_path, "--source", source, "-n")
    assert dry.code == 0 and "rm -rf" in dry.stdout and (source / "_output").exists()
    cleaned = kdist("clean", "--remote", "--hosts", farm.inventory_path, "--source", source)
    assert cleaned.code == 0, cleaned.stderr
    assert not (source / "_output").exists()
    assert not workdir.exists()
    assert "h2: removed" in cleaned.stdout


def test_delegated_packaging_runs_the_repository_command(farm: Farm, tmp_path: Path) -> None:
    """A profile `package:` command runs on the head node after the binaries are in dockerized/bin."""
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "layout: kubernetes\n"
        'package: sh -c \'mkdir -p "$OUT_DIR/release-tars" && '
        'tar czf "$OUT_DIR/release-tars/own.tar.gz" -C "$OUT_DIR/dockerized/bin" .\'\n'
    )
    k8s_source = make_project("kubernetes", tmp_path / "kubernetes")
    out = k8s_source / "_output-delegated"
    ran = release(
        k8s_source,
        "--profile",
        profile,
        hosts=farm.inventory_path,
        out=out,
        platforms="linux/s390x",
    )
    assert ran.code == 0, ran.stderr + ran.stdout[-2000:]
    assert [t["name"] for t in ran.json["tarballs"]] == ["own.tar.gz"]
    assert "own.tar.gz" in _sums(out)
    listing = subprocess.run(
        ["tar", "tzf", str(out / "release-tars/own.tar.gz")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "./linux/s390x/kubelet" in listing
