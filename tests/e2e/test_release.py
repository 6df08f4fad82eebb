"""kdist release end to end: the real CLI, a real sshd farm, rsync, Go and make."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

from kdist.config import kubernetes
from kdist.model import Platform, parse_platform_list
from kdist.testing.devfarm import Farm
from tests.helpers import Ran, kdist, release

pytestmark = pytest.mark.e2e

ELF_MACHINE = {
    "amd64": "EM_X86_64",
    "arm64": "EM_AARCH64",
    "s390x": "EM_S390",
    "ppc64le": "EM_PPC64",
    "arm": "EM_ARM",
    "386": "EM_386",
}


@pytest.fixture(scope="module")
def full_release(
    farm: Farm, k8s_source: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Ran, Path, dict[str, int]]:
    """One release of every default platform of the Kubernetes example on the 3-host farm."""
    before = {h.name: farm.accepted_logins(h.name) for h in farm.hosts}
    out = tmp_path_factory.mktemp("release") / "out"
    ran = release(k8s_source, hosts=farm.inventory_path, out=out, skip_tests=False)
    logins = {h.name: farm.accepted_logins(h.name) - before[h.name] for h in farm.hosts}
    return ran, out, logins


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _elf_machine(path: Path) -> str:
    with path.open("rb") as handle:
        return str(ELFFile(handle)["e_machine"])


def test_full_release_succeeds_with_every_default_platform(
    full_release: tuple[Ran, Path, dict[str, int]],
) -> None:
    """A release of the Kubernetes example builds all 11 default platforms and exits 0."""
    ran, _, _ = full_release
    assert ran.code == 0, ran.stderr + ran.stdout[-3000:]
    doc = ran.json
    assert doc["ok"] is True
    built = {s["platform"] for s in doc["slices"] if s["status"] == "ok"}
    assert built == {str(p) for p in kubernetes.classes_for().all}


def test_native_platforms_go_to_native_hosts(
    full_release: tuple[Ran, Path, dict[str, int]],
) -> None:
    """Each farm host builds its native platform; platforms without a native host are cross-compiled."""
    doc = full_release[0].json
    where = {s["platform"]: (s["host"], s["cross"]) for s in doc["slices"]}
    assert where["linux/amd64"] == ("h1", False)
    assert where["linux/arm64"] == ("h2", False)
    assert where["linux/s390x"] == ("h3", False)
    assert where["linux/ppc64le"][1] is True
    assert any("linux/ppc64le" in note and "cross" in note for note in doc["notes"])


def test_every_binary_matches_its_platform(full_release: tuple[Ran, Path, dict[str, int]]) -> None:
    """Every Linux binary's ELF machine matches its platform, and every expected binary is there."""
    _, out, _ = full_release
    for platform in kubernetes.classes_for().all:
        folder = out / "dockerized/bin" / platform.os / platform.arch
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted(kubernetes.expected_binaries(platform)), platform
        if platform.os == "linux":
            for name in names:
                assert _elf_machine(folder / name) == ELF_MACHINE[platform.arch], (platform, name)


def test_binaries_carry_the_head_node_version(
    full_release: tuple[Ran, Path, dict[str, int]],
) -> None:
    """Every binary of the release embeds the version decided on the head node (v1.3.0 from git)."""
    ran, out, _ = full_release
    assert ran.json["version"] == "v1.3.0"
    for binary in (out / "dockerized/bin").glob("*/*/*"):
        if binary.name.startswith("mounter"):
            continue  # mounter has no version stamp upstream either
        assert b"v1.3.0" in binary.read_bytes(), binary


def test_release_tarballs_and_checksums(full_release: tuple[Ran, Path, dict[str, int]]) -> None:
    """release-tars holds the reference's tarballs and SBOMs; the SUMS files list both, rightly."""
    ran, out, _ = full_release
    tars = out / "release-tars"
    names = sorted(p.name for p in tars.glob("*.tar.gz"))
    assert names == sorted(kubernetes.tarball_names(kubernetes.classes_for()))
    sboms = sorted(f"kubernetes-{p.dashed}.spdx.json" for p in kubernetes.classes_for().all)
    lines = (tars / "SHA256SUMS").read_text().splitlines()
    sums = {name: digest for digest, name in (line.split("  ", 1) for line in lines)}
    assert sorted(sums) == sorted(names + sboms)
    for name, digest in sums.items():
        assert _sha256(tars / name) == digest
    sha512 = (tars / "SHA512SUMS").read_text().splitlines()
    assert len(sha512) == len(names) + len(sboms)
    reported = {t["name"]: t["sha256"] for t in ran.json["tarballs"]}
    assert all(reported[n] == sums[n] for n in names)


def test_server_node_client_tarball_layout(full_release: tuple[Ran, Path, dict[str, int]]) -> None:
    """Server, node and client tarballs have the upstream inner layout for linux/arm64."""
    tars = full_release[1] / "release-tars"

    def members(name: str) -> set[str]:
        with tarfile.open(tars / name) as tar:
            return set(tar.getnames())

    server = members("kubernetes-server-linux-arm64.tar.gz")
    for binary in ("kube-apiserver", "kubelet", "kubectl", "mounter", "kube-log-runner"):
        assert f"kubernetes/server/bin/{binary}" in server
    assert {
        "kubernetes/addons",
        "kubernetes/kubernetes-src.tar.gz",
        "kubernetes/LICENSES/LICENSE",
    } <= server
    node = members("kubernetes-node-windows-amd64.tar.gz")
    assert "kubernetes/node/bin/kubelet.exe" in node and "kubernetes/node/bin/kubectl.exe" in node
    client = members("kubernetes-client-linux-386.tar.gz")
    assert {m for m in client if "/bin/" in m} == {
        "kubernetes/client/bin/kubectl",
        "kubernetes/client/bin/kubectl-convert",
    }


def test_one_ssh_connection_per_host(full_release: tuple[Ran, Path, dict[str, int]]) -> None:
    """All of a host's commands and rsync transfers in a run share one SSH connection."""
    logins = full_release[2]
    assert logins == {"h1": 1, "h2": 1, "h3": 1}


def test_logs_are_written_per_slice(full_release: tuple[Ran, Path, dict[str, int]]) -> None:
    """Each slice's build output is in OUTPUT/logs/<os>-<arch>.log."""
    out = full_release[1]
    log = (out / "logs" / "linux-s390x.log").read_text()
    assert "make cross KUBE_BUILD_PLATFORMS=linux/s390x" in log


def test_generic_project_builds_and_packs(farm: Farm, generic_source: Path, tmp_path: Path) -> None:
    """A project with a kdist.yaml (generic layout) builds on the farm and packs one tarball per platform."""
    ran = release(generic_source, hosts=farm.inventory_path, out=tmp_path / "out", skip_tests=False)
    assert ran.code == 0, ran.stderr + ran.stdout[-3000:]
    tars = tmp_path / "out/release-tars"
    for platform in parse_platform_list("linux/amd64,linux/arm64,linux/s390x"):
        tarball = tars / f"cri-tools-{platform.dashed}.tar.gz"
        with tarfile.open(tarball) as tar:
            names = sorted(tar.getnames())
            assert names == ["cri-tools", "cri-tools/crictl", "cri-tools/critest"], names
            data = tar.extractfile("cri-tools/crictl")
            assert data is not None
            head = data.read()
        assert b"v0.9.1" in head
        binary = tmp_path / "out/bin" / platform.os / platform.arch / "crictl"
        assert _elf_machine(binary) == ELF_MACHINE[platform.arch]
    assert (tars / "SHA256SUMS").is_file() and (tars / "SHA512SUMS").is_file()


def _failing_inventory(farm: Farm, dest: Path) -> Path:
    # h2's Go is told to use an unknown flag: its builds fail, the other hosts' do not.
    text = farm.inventory_path.read_text()
    marker = "  h2:\n"
    assert marker in text
    broken = text.replace(marker, marker + '    env: {GOFLAGS: "-kdist-no-such-flag"}\n')
    dest.write_text(broken)
    return dest


def test_failing_host_fails_the_release_and_names_it(
    farm: Farm, k8s_source: Path, tmp_path: Path
) -> None:
    """A build failure on one host fails the release (exit 1), names the host, keeps the others' results."""
    inventory = _failing_inventory(farm, tmp_path / "inventory.yaml")
    out = tmp_path / "out"
    (out / "release-tars").mkdir(parents=True)
    (out / "release-tars" / "previous.txt").write_text("an earlier release")
    ran = release(
        k8s_source,
        hosts=inventory,
        out=out,
        platforms="linux/amd64,linux/arm64,linux/s390x",
        skip_tests=False,
    )
    assert ran.code == 1, ran.stderr
    doc: dict[str, Any] = ran.json
    status = {s["platform"]: (s["host"], s["status"]) for s in doc["slices"]}
    assert status["linux/arm64"] == ("h2", "failed")
    assert status["linux/amd64"][1] == "ok" and status["linux/s390x"][1] == "ok"
    assert "h2" in doc["title"]
    failed = next(s for s in doc["slices"] if s["host"] == "h2")
    assert "kdist-no-such-flag" in failed["error"]
    # Nothing partial was published; the previous release is untouched.
    assert sorted(p.name for p in (out / "release-tars").iterdir()) == ["previous.txt"]
    assert (out / "dockerized/bin/linux/amd64/kubectl").is_file()


def test_failing_host_message_without_json(farm: Farm, k8s_source: Path, tmp_path: Path) -> None:
    """Without --json, the plain summary names the failed host and platform."""
    inventory = _failing_inventory(farm, tmp_path / "inventory.yaml")
    ran = release(
        k8s_source,
        hosts=inventory,
        out=tmp_path / "o",
        platforms="linux/arm64",
        skip_tests=False,
        json=False,
    )
    assert ran.code == 1
    assert "h2" in ran.stdout and "linux/arm64" in ran.stdout and "FAILED" in ran.stdout


def test_build_one_platform_on_a_named_host(farm: Farm, k8s_source: Path) -> None:
    """`kdist build --platform linux/arm64 --host h2 cmd/kubectl` leaves only kubectl, for arm64, in _output/local/bin."""
    ran = kdist(
        "build",
        "--hosts",
        farm.inventory_path,
        "--source",
        k8s_source,
        "--platform",
        "linux/arm64",
        "--host",
        "h2",
        "cmd/kubectl",
        "--json",
    )
    assert ran.code == 0, ran.stderr + ran.stdout[-2000:]
    folder = k8s_source / "_output/local/bin/linux/arm64"
    assert sorted(p.name for p in folder.iterdir()) == ["kubectl"]
    assert _elf_machine(folder / "kubectl") == "EM_AARCH64"
    assert ran.json["slices"][0]["host"] == "h2"


def test_dry_run_prints_plan_and_connects_nowhere(
    farm: Farm, k8s_source: Path, tmp_path: Path
) -> None:
    """--dry-run prints each platform's host and exact command, and opens no SSH connection."""
    before = {h.name: farm.accepted_logins(h.name) for h in farm.hosts}
    ran = release(
        k8s_source,
        "-n",
        hosts=farm.inventory_path,
        out=tmp_path / "o",
        platforms="linux/arm64,windows/amd64",
        skip_tests=False,
        json=False,
    )
    assert ran.code == 0, ran.stderr
    assert "make cross KUBE_BUILD_PLATFORMS=linux/arm64" in ran.stdout
    assert "KUBE_BUILD_PLATFORMS=windows/amd64" in ran.stdout
    assert "rsync" in ran.stdout
    assert {h.name: farm.accepted_logins(h.name) for h in farm.hosts} == before
    assert not (tmp_path / "o").exists()


def test_release_without_inventory_builds_on_this_machine(k8s_source: Path, tmp_path: Path) -> None:
    """Without --hosts the head node builds the slice itself, in its own tree, and packs it."""
    out = tmp_path / "out"
    ran = release(k8s_source, out=out, platforms="linux/386", skip_tests=False)
    assert ran.code == 0, ran.stderr + ran.stdout[-2000:]
    assert ran.json["slices"][0]["host"] == "local"
    assert (out / "release-tars/kubernetes-client-linux-386.tar.gz").is_file()
    assert _elf_machine(out / "dockerized/bin/linux/386/kubectl") == "EM_386"


def test_unknown_platform_is_refused_before_connecting(farm: Farm, k8s_source: Path) -> None:
    """A typo in --platforms is a configuration error (exit 2) that names the bad platform."""
    ran = release(
        k8s_source, hosts=farm.inventory_path, platforms="linux/amd46", skip_tests=False, json=False
    )
    assert ran.code == 2
    assert "amd46" in ran.stderr


@pytest.mark.parametrize("platform", [Platform("linux", "arm64")])
def test_native_only_refuses_cross(farm: Farm, k8s_source: Path, platform: Platform) -> None:
    """--native-only turns a platform without a native host into an error naming it."""
    ran = release(
        k8s_source,
        "--native-only",
        "-n",
        hosts=farm.inventory_path,
        platforms=f"{platform},linux/ppc64le",
        skip_tests=False,
        json=False,
    )
    assert ran.code == 2
    assert "linux/ppc64le" in ran.stderr
