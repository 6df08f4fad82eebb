"""Kubernetes-family projects end to end: versions that ask git, platform-less outputs, cgo.

The project is examples/edge (KubeEdge-shaped): hack/lib/version.sh asks git on whatever
machine builds, binaries land in _output/local/bin without a platform, edgecore has a C part.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from kdist.testing.buildimage import CROSS_ARM64, ensure_image
from kdist.testing.devfarm import Farm
from kdist.testing.dockerd import Dockerd
from tests.helpers import git, make_project, release

pytestmark = pytest.mark.e2e

TAG = "v1.4.2"
TWO = "linux/amd64,linux/arm64"
BINARIES = ("keadm", "edgecore")
MACHINE = {"amd64": "EM_X86_64", "arm64": "EM_AARCH64"}
# The farm's hosts are one amd64 machine without a C cross compiler, and h2 stands in for an
# arm64 host: their builds leave cgo off (edgecore then links its Go fallback).
NO_CGO = 'env: {CGO_ENABLED: "0"}'


@pytest.fixture
def edge(tmp_path: Path) -> Path:
    """The edge example as a clean git checkout at tag v1.4.2."""
    return make_project("edge", tmp_path / "edge", TAG)


def profile_with(source: Path, dest: Path, old: str, new: str) -> Path:
    """The example's kdist.yaml with one line changed, written to `dest` (for --profile)."""
    text = (source / "kdist.yaml").read_text()
    assert old in text
    dest.write_text(text.replace(old, new))
    return dest


def head_answers(source: Path) -> tuple[str, str, str]:
    """(version, commit, tree state) as the project's own version script says on the head node."""
    script = (
        'source hack/lib/init.sh && kube::version::get_version_vars && '
        'echo "$KUBE_GIT_VERSION $KUBE_GIT_COMMIT $KUBE_GIT_TREE_STATE"'
    )
    done = subprocess.run(["bash", "-c", script], cwd=source, capture_output=True, text=True,
                          check=True)  # fmt: skip
    version, commit, state = done.stdout.split()
    return version, commit, state


def elf_machine(path: Path) -> str:
    """The ELF machine of a binary (EM_X86_64, EM_AARCH64, ...)."""
    with path.open("rb") as handle:
        return str(ELFFile(handle)["e_machine"])


def check_stamped(out: Path, answers: tuple[str, str, str]) -> None:
    """Every binary of both platforms carries the head node's answers; amd64 ones say them."""
    version, commit, state = answers
    for platform in TWO.split(","):
        for name in BINARIES:
            binary = out / "bin" / platform / name
            data = binary.read_bytes()
            assert version.encode() in data, (binary, version)
            assert commit.encode() in data, (binary, commit)
            assert elf_machine(binary) == MACHINE[platform.split("/")[1]]
    said = subprocess.run([out / "bin/linux/amd64/keadm", "version"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    assert f"gitVersion:{version} gitCommit:{commit} gitTreeState:{state} " in said, said


def test_every_binary_carries_the_head_nodes_git_describe(
    farm: Farm, edge: Path, tmp_path: Path
) -> None:
    """Tagged clean, one commit past the tag, a new tag, dirty: each binary says what git says here.

    The unchanged tree is a no-op (every slice reused); a new tag rebuilds.
    """
    profile = profile_with(edge, tmp_path / "kdist.yaml", 'env: {CGO_ENABLED: "1"}', NO_CGO)
    out = tmp_path / "out"

    def released() -> list[bool]:
        ran = release(edge, "--profile", profile, hosts=farm.inventory_path, out=out,
                      platforms=TWO)  # fmt: skip
        assert ran.code == 0, ran.stderr + ran.stdout[-3000:]
        assert {s["host"] for s in ran.json["slices"]} == {"h1", "h2"}
        return [s["reused"] for s in ran.json["slices"]]

    assert released() == [False, False]
    assert head_answers(edge) == (TAG, git(edge, "rev-parse", "HEAD").strip(), "clean")
    check_stamped(out, head_answers(edge))
    assert released() == [True, True]  # nothing changed: nothing built

    (edge / "README.md").write_text("one more commit\n")
    git(edge, "add", "-A")
    git(edge, "commit", "-q", "-m", "one past the tag")
    described = git(edge, "describe", "--tags", "--match=v*", "--abbrev=14").strip()
    assert described.startswith(f"{TAG}-1-g")
    assert released() == [False, False]
    assert head_answers(edge)[0] == described.replace("-g", "+")
    check_stamped(out, head_answers(edge))

    git(edge, "tag", "v1.5.0")
    assert released() == [False, False]  # a second tag rebuilds
    assert head_answers(edge)[0] == "v1.5.0"
    check_stamped(out, head_answers(edge))

    with (edge / "cmd/keadm/main.go").open("a") as handle:
        handle.write("\n// an uncommitted change\n")
    assert released() == [False, False]
    assert head_answers(edge)[::2] == ("v1.5.0-dirty", "dirty")
    check_stamped(out, head_answers(edge))


def test_platformless_outputs_release_ten_times_on_one_host_of_capacity_two(
    farm: Farm, edge: Path, tmp_path: Path
) -> None:
    """Both slices on h1 (capacity 2) at once, 10 runs: each binary has the right architecture.

    Without a private tree per slice the second build overwrote the first one's binaries.
    """
    profile = profile_with(edge, tmp_path / "kdist.yaml", 'env: {CGO_ENABLED: "1"}', NO_CGO)
    inventory = tmp_path / "capacity2.yaml"
    inventory.write_text(farm.inventory_text().replace("  capacity: 1\n", "  capacity: 2\n"))
    out, overlapped = tmp_path / "out", 0
    for run in range(10):
        timeline = tmp_path / f"timeline-{run}.json"
        ran = release(edge, "--profile", profile, "--host", "h1", "--rebuild", "--timeline",
                      timeline, hosts=inventory, out=out, platforms=TWO)  # fmt: skip
        assert ran.code == 0, f"run {run}: " + ran.stderr + ran.stdout[-3000:]
        for slc in ran.json["slices"]:
            assert slc["host"] == "h1" and not slc["reused"]
            for name in BINARIES:
                binary = out / "bin" / slc["platform"] / name
                assert elf_machine(binary) == MACHINE[slc["platform"].split("/")[1]], (run, binary)
        overlapped += _builds_overlap(timeline)
    assert overlapped, "the two slices never built at the same time: capacity 2 was not used"


def _builds_overlap(timeline: Path) -> bool:
    """True when the run's two build phases ran at the same time."""
    events = json.loads(timeline.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    builds = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "build")
    assert len(builds) == 2, builds
    return bool(builds[1][0] < builds[0][1])


@pytest.fixture(scope="module")
def cross_box(dockerd: Dockerd, gocache: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:  # fmt: skip
    """One amd64 sshd host whose docker_socket is the test daemon."""
    root = tmp_path_factory.mktemp("cross")
    with Farm(root, 1, first_address=171, gocache=gocache, docker_socket=dockerd.socket) as farm:
        yield farm


@pytest.mark.docker
def test_cgo_binary_cross_compiled_for_arm64_in_a_container(
    cross_box: Farm, dockerd: Dockerd, edge: Path, tmp_path: Path
) -> None:
    """platform_env's CC for cross linux/arm64, in an image with Debian's cross gcc: C linked in.

    The image has git too: the version script asks it in the container, through the tree's .git.
    """
    tag, _ = ensure_image(dockerd.url, extra=(*CROSS_ARM64, "git"))
    profile = tmp_path / "kdist.yaml"
    profile.write_text((edge / "kdist.yaml").read_text() + f"container: {{image: {tag}}}\n")
    ran = release(edge, "--profile", profile, hosts=cross_box.inventory_path,
                  out=tmp_path / "out", platforms="linux/arm64", env=dockerd.env())  # fmt: skip
    assert ran.code == 0, ran.stderr + ran.stdout[-3000:]
    (slc,) = ran.json["slices"]
    assert slc["cross"] and slc["host"] == "h1"
    log = Path(slc["log"]).read_text()
    assert "CGO_ENABLED=1" in log  # the build script says how it builds
    binary = tmp_path / "out/bin/linux/arm64/edgecore"
    with binary.open("rb") as handle:
        elf = ELFFile(handle)
        assert elf["e_machine"] == "EM_AARCH64"
        dynamic = elf.get_section_by_name(".dynamic")
        assert isinstance(dynamic, DynamicSection)
        needed = {str(getattr(t, "needed", "")) for t in dynamic.iter_tags("DT_NEEDED")}
        assert "libc.so.6" in needed
        interp = elf.get_section_by_name(".interp")
        assert interp is not None and b"ld-linux-aarch64.so.1" in interp.data()
    assert b"edgecore-c-part: linked" in binary.read_bytes()  # the C part's own string
    keadm = tmp_path / "out/bin/linux/arm64/keadm"
    assert elf_machine(keadm) == "EM_AARCH64"
    version, commit, state = head_answers(edge)
    assert (version, state) == (TAG, "clean")
    for built in (binary, keadm):
        assert version.encode() in built.read_bytes() and commit.encode() in built.read_bytes()
