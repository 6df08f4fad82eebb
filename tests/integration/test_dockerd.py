"""The private Docker daemon of the test suite: starts fast, stops leaving nothing behind."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from kdist.testing import buildimage
from kdist.testing.dockerd import Dockerd

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def docker(daemon: Dockerd, *args: str) -> str:
    """Run the docker CLI against `daemon`."""
    done = subprocess.run(
        ["docker", "-H", daemon.url, *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def tiny_image(daemon: Dockerd, work: Path) -> str:
    """Import a one-file image: Go's static gofmt, which blocks reading stdin."""
    gofmt = buildimage.goroot() / "bin" / "gofmt"
    tar = work / "tiny.tar"
    with tarfile.open(tar, "w") as out:
        out.add(gofmt, arcname="gofmt")
    docker(daemon, "import", str(tar), "kdist-test/tiny:1")
    return "kdist-test/tiny:1"


def test_stop_leaves_no_container_process_or_mount(tmp_path: Path) -> None:
    """A daemon with a running container stops by pid with no process, mount or data left."""
    daemon = Dockerd(tmp_path / "d")
    daemon.start()
    try:
        image = tiny_image(daemon, tmp_path)
        docker(daemon, "run", "-d", "-i", "--init", "--network", "none", image, "/gofmt")
        assert docker(daemon, "ps", "-q")
    finally:
        daemon.stop()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(daemon.root) not in mounts
    leftovers = subprocess.run(["pgrep", "-f", str(daemon.root)], capture_output=True, text=True)
    assert leftovers.stdout == ""
    assert not daemon.socket.exists()
    assert not daemon.data_root.exists()
    assert not daemon.exec_root.exists()


def test_context_manager_reaches_the_api(tmp_path: Path) -> None:
    """As a context manager the daemon answers on its own socket and is gone afterwards."""
    with Dockerd(tmp_path / "d") as daemon:
        assert daemon.ready()
        assert daemon.api("GET", "/version")["ApiVersion"]
    assert not daemon.ready()
    assert daemon.pid() is None


def test_build_image_runs_make_and_go(dockerd: Dockerd, build_image: tuple[str, str]) -> None:
    """The session build image has make, bash and a Go that does not download toolchains."""
    tag, image = build_image
    assert image.startswith("sha256:")
    out = docker(
        dockerd,
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "4321:4321",
        tag,
        "sh",
        "-c",
        "make --version | head -1; bash -c 'echo ${BASH_VERSINFO[0]}'; go env GOTOOLCHAIN",
    )
    lines = out.splitlines()
    assert lines[0].startswith("GNU Make")
    assert lines[1].isdigit()
    assert lines[2] == "local"
