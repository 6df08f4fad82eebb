"""The build info reader against the real oracle, `go version -m`, on real Go binaries."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kdist.packaging import buildinfo
from tests import goimage
from tests.helpers import EXAMPLES

pytestmark = pytest.mark.integration

# ELF 32-bit little-endian, ELF 64-bit big-endian, PE32+, Mach-O 64-bit: every reader path.
PLATFORMS = ("linux/386", "linux/s390x", "windows/amd64", "darwin/arm64")


def _go_version_m(path: Path) -> str:
    done = subprocess.run(["go", "version", "-m", str(path)], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout


def _as_go_prints_it(path: Path) -> str:
    info = buildinfo.read_file(path)
    assert info is not None, path
    lines = "".join(f"\t{line}\n" for line in info.modinfo.rstrip("\n").split("\n"))
    return f"{path}: {info.go_version}\n{lines}"


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory, gocache: Path) -> list[Path]:
    """crictl of the generic example (with its vendored module) built for each platform."""
    tree = tmp_path_factory.mktemp("src") / "generic"
    shutil.copytree(EXAMPLES / "generic", tree)
    out = tmp_path_factory.mktemp("bin")
    built = []
    for platform in PLATFORMS:
        goos, goarch = platform.split("/")
        dest = out / f"crictl-{goos}-{goarch}"
        env = {**os.environ, "GOOS": goos, "GOARCH": goarch, "CGO_ENABLED": "0",
               "GOFLAGS": "-buildvcs=false", "GOCACHE": str(gocache), "GOTOOLCHAIN": "local",
               "GOPROXY": "off"}  # fmt: skip
        subprocess.run(["go", "build", "-trimpath", "-ldflags", "-X main.x=1", "-o", str(dest),
                        "./cmd/crictl"], cwd=tree, env=env, check=True)  # fmt: skip
        built.append(dest)
    return built


def test_real_binaries_read_as_go_version_m_reads_them(binaries: list[Path]) -> None:
    """ELF (32/64-bit, both byte orders), PE and Mach-O binaries: the same text as the oracle."""
    for path in binaries:
        assert _as_go_prints_it(path) == _go_version_m(path)


def test_vendored_module_is_listed(binaries: list[Path]) -> None:
    """The example's vendored dependency is in every binary's module list."""
    for path in binaries:
        info = buildinfo.read_file(path)
        assert info is not None
        assert buildinfo.Module("example.com/semver", "v0.2.0") in info.deps


@pytest.mark.parametrize(("wide", "big"), [(True, False), (False, True)])
def test_pre_118_pointer_format_agrees_with_go(tmp_path: Path, wide: bool, big: bool) -> None:
    """Go's own reader accepts the synthetic pre-1.18 images and prints what kdist reads."""
    modinfo = "path\texample.com/old\nmod\texample.com/old\t(devel)\t\ndep\tgolang.org/x/text\tv0.3.0\th1:x=\n"
    ptr = 8 if wide else 4
    path = tmp_path / "old"
    path.write_bytes(goimage.elf(
        0x1000, lambda a: goimage.pointer_blob("go1.17.13", modinfo, a, ptr, big), wide=wide, big=big
    ))  # fmt: skip
    assert _as_go_prints_it(path) == _go_version_m(path)
