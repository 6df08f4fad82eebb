"""Release trust end to end on the farm: provenance, reproducibility, toolchains, SBOM, signatures.

The generic example (with its vendored module) keeps these cheap: a few small Go binaries.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kdist.testing.devfarm import Farm
from tests.helpers import Ran, kdist, release

pytestmark = pytest.mark.e2e

PLATFORMS = "linux/amd64,linux/386"  # amd64: native on h1 (smoke-tested); 386: no native host
OLDER_GO = Path(sys.prefix) / "go-older" / "go" / "bin"  # scripts/setup installs Go 1.21 here


def _profile(tmp_path: Path, **keys: str) -> Path:
    """The generic example's profile with some keys replaced or added."""
    doc = {
        "name": "cri-tools",
        "layout": "generic",
        "platforms": "[linux/amd64]",
        "build": "make binaries GOOS={os} GOARCH={arch}",
        "artifacts": "build/bin/{os}/{arch}",
        "env": '{CGO_ENABLED: "0"}',
        **keys,
    }
    path = tmp_path / "kdist-trust.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in doc.items()))
    return path


def _key(folder: Path) -> tuple[Path, Path]:
    key = folder / "release_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "release", "-f", str(key)],
                   check=True)  # fmt: skip
    allowed = folder / "allowed_signers"
    allowed.write_text(f'release@example namespaces="kdist" {key.with_suffix(".pub").read_text()}')
    return key, allowed


@pytest.fixture(scope="module")
def trusted(
    farm: Farm, generic_source: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Ran, Path, Path]:
    """A signed release of two platforms, every slice rebuilt on a second host, smoke-tested."""
    folder = tmp_path_factory.mktemp("trusted")
    key, allowed = _key(folder)
    profile = _profile(folder, smoke='"{bin} --version"')
    ran = release(
        generic_source, "--profile", profile, "--verify-reproducible=all", "--sign-key", key,
        hosts=farm.inventory_path, out=folder / "out", platforms=PLATFORMS,
    )  # fmt: skip
    return ran, folder / "out", allowed


def _statement(out: Path) -> dict[str, Any]:
    statement: dict[str, Any] = json.loads(
        (out / "release-tars" / "provenance.intoto.json").read_text()
    )
    return statement


def _slices(out: Path) -> dict[str, dict[str, Any]]:
    params = _statement(out)["predicate"]["buildDefinition"]["internalParameters"]
    return {s["platform"]: s for s in params["slices"]}


def _known_fingerprint(farm: Farm, name: str) -> str:
    """The SHA256 fingerprint of the host's key as recorded in the farm's known_hosts."""
    host = farm.host(name)
    done = subprocess.run(
        ["ssh-keygen", "-l", "-F", host.known_hosts_pattern, "-f", str(farm.known_hosts_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(li for li in done.stdout.splitlines() if not li.startswith("#"))
    return next(word for word in line.split() if word.startswith("SHA256:"))


def test_release_with_every_check_succeeds(trusted: tuple[Ran, Path, Path]) -> None:
    """The signed, reproducibility-checked, smoke-tested release exits 0 and publishes."""
    ran, out, _ = trusted
    assert ran.code == 0, ran.stderr + ran.stdout[-3000:]
    names = {p.name for p in (out / "release-tars").iterdir()}
    assert {"provenance.intoto.json", "provenance.intoto.json.sig", "SHA256SUMS.sig",
            "SHA512SUMS.sig", "cri-tools-linux-amd64.spdx.json"} <= names  # fmt: skip


def test_provenance_fingerprints_match_known_hosts(
    trusted: tuple[Ran, Path, Path], farm: Farm
) -> None:
    """Each binary's build host and its rebuild host carry the key fingerprint of known_hosts."""
    _, out, _ = trusted
    statement = _statement(out)
    binaries = [s for s in statement["subject"] if "/" in s["name"]]
    assert len(binaries) == 4  # crictl and critest for two platforms
    for platform, doc in _slices(out).items():
        for build in (doc["build"], doc["reproducibility"]["rebuild"]):
            host = build["host"]
            assert host["address"] == farm.host(host["name"]).address
            assert host["hostKeyFingerprint"] == _known_fingerprint(farm, host["name"]), platform
            assert build["toolchain"]["go"].startswith("go1.")
            assert build["command"] == ["make", "binaries", "GOOS=linux", f"GOARCH={platform[6:]}"]
            assert build["env"]["VERSION"] == "v0.9.1"
            assert build["startedOn"] <= build["finishedOn"]


def test_reproducibility_is_recorded(trusted: tuple[Ran, Path, Path]) -> None:
    """Every slice was rebuilt on a different host and agreed byte for byte."""
    _, out, _ = trusted
    for doc in _slices(out).values():
        rep = doc["reproducibility"]
        assert rep["agreed"] is True and rep["differences"] == []
        assert rep["rebuild"]["host"]["name"] != doc["build"]["host"]["name"]


def test_smoke_runs_on_native_hosts_and_marks_the_rest_untested(
    trusted: tuple[Ran, Path, Path],
) -> None:
    """amd64 binaries ran on h1 (native); 386 ones have no native host and are untested."""
    _, out, _ = trusted
    slices = _slices(out)
    amd64 = {s["binary"]: s for s in slices["linux/amd64"]["smoke"]}
    assert amd64["crictl"]["result"] == "passed" and amd64["crictl"]["host"] == "h1"
    assert "crictl version v0.9.1" in amd64["crictl"]["output"]
    assert {s["result"] for s in slices["linux/386"]["smoke"]} == {"untested"}


def test_sbom_lists_the_vendored_module(trusted: tuple[Ran, Path, Path]) -> None:
    """The SBOM of each platform names the vendored example.com/semver at v0.2.0."""
    _, out, _ = trusted
    doc = json.loads((out / "release-tars" / "cri-tools-linux-386.spdx.json").read_text())
    packages = {p["name"]: p for p in doc["packages"]}
    assert packages["example.com/semver"]["versionInfo"] == "v0.2.0"
    assert packages["crictl"]["checksums"][0]["checksumValue"] == next(
        s["digest"]["sha256"] for s in _statement(out)["subject"]
        if s["name"] == "bin/linux/386/crictl"
    )  # fmt: skip


def test_ssh_keygen_accepts_the_signatures(trusted: tuple[Ran, Path, Path]) -> None:
    """Plain `ssh-keygen -Y verify` accepts each published signature."""
    _, out, allowed = trusted
    tars = out / "release-tars"
    for name in ("SHA256SUMS", "SHA512SUMS", "provenance.intoto.json"):
        done = subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "release@example",
             "-n", "kdist", "-s", str(tars / f"{name}.sig")],
            input=(tars / name).read_bytes(), capture_output=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_verify_passes_on_the_fresh_release(trusted: tuple[Ran, Path, Path]) -> None:
    """`kdist verify` of the fresh output exits 0."""
    _, out, allowed = trusted
    ran = kdist("verify", out, "--allowed-signers", allowed)
    assert ran.code == 0, ran.stdout + ran.stderr
    assert ran.stdout.rstrip().endswith("verified")


@pytest.mark.parametrize(
    "victim",
    ["release-tars/cri-tools-linux-amd64.tar.gz", "bin/linux/amd64/crictl",
     "release-tars/SHA256SUMS.sig"],
)  # fmt: skip
def test_verify_names_one_flipped_byte(
    trusted: tuple[Ran, Path, Path], tmp_path: Path, victim: str
) -> None:
    """One byte flipped in a tarball, a binary listed only in the provenance, or a signature."""
    _, out, allowed = trusted
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    target = copy / victim
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x20
    target.write_bytes(bytes(data))
    ran = kdist("verify", copy, "--allowed-signers", allowed, "--json")
    assert ran.code == 4, ran.stdout + ran.stderr
    failed = {f["file"] for f in ran.json["findings"] if not f["ok"]}
    assert victim.removeprefix("release-tars/") in failed


def test_host_name_in_the_binary_is_caught_by_the_reproducibility_gate(
    farm: Farm, generic_source: Path, tmp_path: Path
) -> None:
    """A build that embeds `hostname` differs between two hosts: exit 4, both hosts named."""
    build = "\"sh -c 'exec make binaries GOOS=$0 GOARCH=$1 VERSION=v0.9.1+$(hostname)' {os} {arch}\""
    ran = release(
        generic_source, "--profile", _profile(tmp_path, build=build), "--verify-reproducible",
        hosts=farm.inventory_path, out=tmp_path / "out", platforms="linux/386",
    )  # fmt: skip
    assert ran.code == 4, ran.stderr + ran.stdout[-3000:]
    [doc] = ran.json["slices"]
    first, second = doc["host"], doc["reproducibility"]["host"]
    assert first != second
    assert f"{first} and {second} built different bytes" in doc["error"]
    assert "crictl:" in doc["error"] and "first difference at offset" in doc["error"]
    assert "(section " in doc["error"]
    if shutil.which("diffoscope"):
        assert doc["reproducibility"]["reports"], "diffoscope is installed but wrote no report"
    assert not (tmp_path / "out" / "release-tars").exists()


def test_host_with_another_go_is_refused(
    farm: Farm, generic_source: Path, tmp_path: Path
) -> None:
    """h2 runs Go 1.21 while the others run the current Go: exit 2 naming hosts and versions."""
    assert (OLDER_GO / "go").is_file(), f"no second Go at {OLDER_GO}: run scripts/setup"
    text = farm.inventory_path.read_text()
    path = f"{OLDER_GO}:/usr/local/bin:/usr/bin:/bin"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(text.replace("  h2:\n", f'  h2:\n    env: {{PATH: "{path}"}}\n'))
    ran = release(generic_source, hosts=inventory, out=tmp_path / "out",
                  platforms="linux/amd64,linux/arm64")  # fmt: skip
    assert ran.code == 2, ran.stderr + ran.stdout[-2000:]
    assert "h2 go1.21.13" in ran.stderr and "h1 go1." in ran.stderr
    assert not (tmp_path / "out" / "logs").exists() or not any((tmp_path / "out/logs").iterdir())


def test_go_version_pin_refuses_hosts_that_differ(
    farm: Farm, generic_source: Path, tmp_path: Path
) -> None:
    """A `.go-version` no host matches stops the release before building, naming each host."""
    source = tmp_path / "src"
    shutil.copytree(generic_source, source, symlinks=True)
    (source / ".go-version").write_text("1.21.13\n")
    ran = release(source, hosts=farm.inventory_path, out=tmp_path / "out", platforms="linux/amd64")
    assert ran.code == 2, ran.stderr + ran.stdout[-2000:]
    assert "h1: go1." in ran.stderr and "does not match .go-version 1.21.13" in ran.stderr


def test_failing_smoke_test_blocks_the_publish(
    farm: Farm, generic_source: Path, tmp_path: Path
) -> None:
    """A binary whose smoke command fails on its native host: exit 1, binary and host named."""
    profile = _profile(tmp_path, smoke='"false {bin}"')
    ran = release(generic_source, "--profile", profile, hosts=farm.inventory_path,
                  out=tmp_path / "out", platforms="linux/amd64")  # fmt: skip
    assert ran.code == 1, ran.stderr + ran.stdout[-2000:]
    [doc] = ran.json["slices"]
    assert "smoke test failed: crictl on h1" in doc["error"]
    assert not (tmp_path / "out" / "release-tars").exists()
