"""A runaway or hostile build host cannot exhaust the head node, measured on the sshd farm."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdist.engine.logtail import unstamp
from kdist.testing.devfarm import Farm
from tests.helpers import SCRATCH_IMAGES, Ran, release

pytestmark = pytest.mark.e2e

LOG_LIMIT = 1 << 20  # --log-limit 1M: small, so the cut is tested, not the disk
RSS_BOUND_KIB = 128 * 1024  # the kdist process while a host floods it (measured ~60 MiB)
_MANIFEST_LINE = "f\t1\t" + "0" * 64 + "\t1\t" + b"crictl".hex()


def _profile(tmp_path: Path, build: str, name: str = "bounds.yaml") -> Path:
    """A generic profile of the cri-tools-like example whose build is `build` (sh -c ...)."""
    profile = tmp_path / name
    profile.write_text(
        "name: cri-tools\n"
        "layout: generic\n"
        "platforms: [linux/amd64]\n"
        f"build: {json.dumps(build)}\n"  # a JSON string is a YAML double-quoted scalar
        "artifacts: build/bin/{os}/{arch}\n"
        'env: {CGO_ENABLED: "0"}\n'
    )
    return profile


def _make_then(then: str) -> str:
    """`make binaries` for {os}/{arch}, then `then` in the artifacts folder's project root."""
    return f"sh -c 'make binaries GOOS=$0 GOARCH=$1 && {then}' {{os}} {{arch}}"


@dataclass
class Measured:
    """A kdist run in a subprocess with its own resource usage."""

    ran: Ran
    max_rss_kib: int
    seconds: float


def _measured(*args: str | Path, cwd: Path) -> Measured:
    """Run `kdist ARGS` and sample its own peak RSS (VmHWM) until it exits.

    Not wait4's ru_maxrss: Linux carries the forking parent's RSS (pytest's, 200 MB late in the
    suite) into a child's maximum across exec, so that figure says nothing about kdist.
    """
    out, err = cwd / "kdist.stdout", cwd / "kdist.stderr"
    start = time.monotonic()
    peak = 0
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kdist", *map(str, args)], stdout=stdout, stderr=stderr
        )
        while proc.poll() is None:
            peak = max(peak, _high_water_kib(proc.pid))
            time.sleep(0.05)  # VmHWM only grows: a late sample misses at most the last 50 ms
    took = time.monotonic() - start
    ran = Ran(proc.returncode, out.read_text(), err.read_text())
    return Measured(ran, peak, took)


def _high_water_kib(pid: int) -> int:
    """The process's peak resident set so far (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _release(
    source: Path, profile: Path, farm: Farm, out: Path, platforms: str, *extra: str
) -> Measured:
    """A measured `kdist release --json --rebuild` of `source` on `farm` into `out`."""
    return _measured(
        "release", "--source", source, "--profile", profile, "--hosts", farm.inventory_path,
        "--output", out, "--platforms", platforms, "--skip-tests", "--rebuild", "--json", *extra,
        cwd=out.parent,
    )  # fmt: skip


def _leftovers(out: Path) -> list[Path]:
    """Staging folders, temp files, tail files or partial releases left in the output."""
    return [
        p
        for p in out.rglob("*")
        if p.name.startswith((".kdist-", ".release-tars"))
        or p.name.endswith((".tmp", ".old"))
        or ".tail" in p.name
    ]


def test_a_flooding_build_succeeds_with_a_bounded_log_and_flat_memory(
    farm: Farm, generic_source: Path, tmp_path: Path
) -> None:
    """20 s of `yes` then success: release ok, log <= 1 MiB, real last lines, RSS bounded."""
    # `echo` ends the line `yes` was writing when `timeout` killed it.
    flood = (
        '(timeout 20 yes "kdist flood test, a build that talks without end" || true) && '
        'echo && echo "real last line 1 of 2" && echo "real last line 2 of 2"'
    )
    out = tmp_path / "out"
    profile = _profile(tmp_path, _make_then(flood))
    got = _release(generic_source, profile, farm, out, "linux/amd64", "--log-limit", "1M")
    assert got.ran.code == 0, got.ran.stderr + got.ran.stdout[-3000:]
    doc = got.ran.json
    assert doc["slices"][0]["status"] == "ok"
    log = out / "logs/linux-amd64.log"
    size = log.stat().st_size
    lines = [unstamp(line) for line in log.read_text().splitlines()]
    assert size <= LOG_LIMIT
    assert lines[-2:] == ["real last line 1 of 2", "real last line 2 of 2"]
    markers = [line for line in lines if line.startswith("# kdist: log over 1 MiB: ")]
    assert len(markers) == 1
    dropped = int(markers[0].split(": ")[2].split()[0])
    assert dropped > 10 * LOG_LIMIT  # 20 s of `yes` is far more than the log keeps
    assert any("its log keeps the first part and the last lines" in n for n in doc["notes"])
    assert got.max_rss_kib < RSS_BOUND_KIB
    assert _leftovers(out) == []
    print(
        f"\nflood: log {size} bytes, {dropped} bytes dropped, kdist peak RSS "
        f"{got.max_rss_kib // 1024} MiB, {got.seconds:.1f} s"
    )


@pytest.fixture
def hostile_farm(tmp_path: Path, gocache: Path) -> Iterator[Farm]:
    """Two amd64 hosts; h1's sshd answers kdist's manifest with an endless artifact list."""
    script = tmp_path / "endless-manifest.sh"
    script.write_text(
        "#!/bin/sh\n"
        "# A compromised host: kdist's artifact list never ends; everything else runs as asked.\n"
        'case "$SSH_ORIGINAL_COMMAND" in\n'
        f"  *kdist-manifest*) exec yes '{_MANIFEST_LINE}' ;;\n"
        "esac\n"
        'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
    )
    script.chmod(0o755)
    platforms = [["linux/amd64"], ["linux/amd64"]]
    extra = {"h1": [f"ForceCommand {script}"]}
    with Farm(
        tmp_path / "farm", 2, first_address=71, platforms=platforms, gocache=gocache,
        extra_config=extra,
    ) as running:  # fmt: skip
        yield running


def test_an_endless_manifest_is_cut_and_the_honest_host_kept(
    hostile_farm: Farm, generic_source: Path, tmp_path: Path
) -> None:
    """h1 lists its artifacts without end: bounded, integrity (exit 4), h2's binaries kept."""
    out = tmp_path / "out"
    profile = _profile(tmp_path, _make_then("true"))
    profile.write_text(profile.read_text().replace("[linux/amd64]", "[linux/amd64, linux/arm64]"))
    got = _release(generic_source, profile, hostile_farm, out, "linux/amd64,linux/arm64")
    assert got.ran.code == 4, got.ran.stderr + got.ran.stdout[-3000:]
    doc = got.ran.json
    said = [s["error"] for s in doc["slices"]] + doc["notes"]
    assert any(
        "h1: linux/" in text and "over the manifest_bytes limit (8 MiB)" in text for text in said
    ), said
    honest = [s for s in doc["slices"] if s["host"] == "h2" and s["status"] == "ok"]
    assert honest, doc["slices"]
    for slc in honest:
        folder = out / "bin" / slc["platform"]
        assert sorted(p.name for p in folder.iterdir()) == ["crictl", "critest"]
    assert not (out / "release-tars").exists()
    assert got.max_rss_kib < RSS_BOUND_KIB and got.seconds < 300
    assert _leftovers(out) == []
    print(f"\nendless manifest: kdist peak RSS {got.max_rss_kib // 1024} MiB, {got.seconds:.1f} s")


def test_two_hundred_thousand_tiny_files_are_refused_by_count(
    farm: Farm, generic_source: Path, tmp_path: Path
) -> None:
    """A build leaving 200,000 files: refused by the artifact_files limit, quickly, none pulled."""
    litter = "cd build/bin/$0/$1 && seq -f litter%06g 200000 | xargs touch"
    out = tmp_path / "out"
    profile = _profile(tmp_path, _make_then(litter))
    got = _release(generic_source, profile, farm, out, "linux/amd64", "--host", "h1")
    assert got.ran.code == 4, got.ran.stderr + got.ran.stdout[-3000:]
    slc = got.ran.json["slices"][0]
    assert "more than 10000 entries" in slc["error"] and "artifact_files limit" in slc["error"]
    assert got.seconds < 300
    assert not (out / "bin/linux/amd64").exists()
    assert _leftovers(out) == []
    print(f"\n200,000 files: refused in {got.seconds:.1f} s (whole release)")


@pytest.fixture
def small_output(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs for the output folder (unmounted afterwards)."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_artifacts_that_do_not_fit_the_output_are_a_head_node_error(
    farm: Farm, k8s_source: Path, tmp_path: Path, small_output: Path
) -> None:
    """20 MB of artifacts, an 8 MiB output disk: exit 5 before the pull, nothing left behind."""
    # The Kubernetes layout: a generic one also keeps git answers in the output, whose pack
    # git cannot rename across filesystems (see the report of issue 14).
    profile = tmp_path / "bulk.yaml"
    profile.write_text(
        "layout: kubernetes\n"
        "build: sh -c 'make cross KUBE_BUILD_PLATFORMS=$0 && "
        "head -c 20000000 /dev/urandom > _output/local/bin/$0/bulk.dat' {platform}\n"
        + SCRATCH_IMAGES
    )
    out = small_output / "out"
    ran = release(
        k8s_source, "--profile", profile, "--rebuild", "--host", "h1",
        hosts=farm.inventory_path, out=out, platforms="linux/386",
    )  # fmt: skip
    assert ran.code == 5, ran.stderr + ran.stdout[-3000:]
    said = ran.stderr + ran.stdout
    assert "the head node" in said and "not enough free space to pull" in said
    assert str(out) in said
    assert [p for p in out.rglob("*") if p.is_file() and "bin" in p.parts] == []
    assert _leftovers(out) == []
