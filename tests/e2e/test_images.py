"""Server images end to end, with the suite's private Docker daemon and a base made locally."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from kdist.model import Platform
from kdist.packaging import bases, oci
from kdist.stages.container import save_image
from kdist.testing.dockerd import Dockerd
from tests.helpers import kdist, make_project, release

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

PLATFORMS = "linux/amd64,linux/arm64"
IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl")
BASE = "kdist-test/base:1"


def docker(daemon: Dockerd, *args: str, stdin: bytes | None = None) -> bytes:
    """Run the docker CLI against `daemon`; its stdout."""
    done = subprocess.run(
        ["docker", "-H", daemon.url, *args], input=stdin, capture_output=True, check=True
    )
    return done.stdout


def _rootfs(path: Path) -> Path:
    """A tiny root file system with a merged /usr (/bin -> usr/bin), as Debian bases have."""
    with tarfile.open(path, "w") as tar:
        for name in ("etc", "usr", "usr/bin"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        link = tarfile.TarInfo("bin")
        link.type, link.linkname = tarfile.SYMTYPE, "usr/bin"
        tar.addfile(link)
        body = b"ID=kdist-test\n"
        info = tarfile.TarInfo("etc/os-release")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return path


def _with_arm64_variant(saved: Path, dest: Path) -> Path:
    """`docker save` output plus an arm64 image of the same files: a two-platform base."""
    with tarfile.open(saved) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    manifest = json.loads(files["manifest.json"])
    config = json.loads(files[manifest[0]["Config"]])
    config["architecture"], config["variant"] = "arm64", "v8"
    raw = json.dumps(config).encode()
    name = hashlib.sha256(raw).hexdigest() + ".json"
    files[name] = raw
    manifest.append(
        {"Config": name, "RepoTags": ["kdist-test/base:arm64"], "Layers": manifest[0]["Layers"]}
    )
    files["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(dest, "w") as out:
        for member, body in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(body)
            out.addfile(info, io.BytesIO(body))
    return dest


@pytest.fixture(scope="module")
def base_archive(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base image made in the daemon (docker import), saved with an arm64 variant added."""
    work = tmp_path_factory.mktemp("base")
    docker(dockerd, "import", "--platform", "linux/amd64", str(_rootfs(work / "rootfs.tar")), BASE)
    docker(dockerd, "save", "-o", str(work / "saved.tar"), BASE)
    return _with_arm64_variant(work / "saved.tar", work / "base.tar")


@pytest.fixture(scope="module")
def released(
    dockerd: Dockerd, base_archive: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """One Kubernetes-shaped release of linux/amd64 and linux/arm64 with server images."""
    source = make_project("kubernetes", tmp_path_factory.mktemp("k8s-images") / "kubernetes")
    env = {
        **dockerd.env(),
        "KUBE_GORUNNER_IMAGE": f"docker-archive:{base_archive}",
        "KUBE_PROXY_BASE_IMAGE": f"docker-archive:{base_archive}",
    }
    ran = release(source, platforms=PLATFORMS, env=env)
    assert ran.code == 0, ran.stderr
    return source / "_output", ran.json


def _server_member(output: Path, platform: str, name: str) -> bytes:
    tarball = output / "release-tars" / f"kubernetes-server-{platform.replace('/', '-')}.tar.gz"
    with tarfile.open(tarball) as tar:
        handle = tar.extractfile(f"kubernetes/server/bin/{name}")
        assert handle is not None
        return handle.read()


def test_every_image_loads_with_its_tag_and_platform(
    dockerd: Dockerd, released: tuple[Path, dict[str, Any]]
) -> None:
    """Each <bin>.tar loads, carries the .docker_tag tag, and inspects as the right os/arch."""
    output, doc = released
    listed = {(i["name"], i["platform"]): i for i in doc["images"]}
    assert len(listed) == 10
    for platform in PLATFORMS.split(","):
        arch = platform.split("/")[1]
        for name in IMAGES:
            archive = _server_member(output, platform, f"{name}.tar")
            tag = _server_member(output, platform, f"{name}.docker_tag").decode()
            assert tag == "v1.3.0\n"
            assert (output / "release-images" / arch / f"{name}.tar").read_bytes() == archive
            loaded = docker(dockerd, "load", stdin=archive).decode()
            ref = f"registry.k8s.io/{name}-{arch}:{tag.strip()}"
            assert f"Loaded image: {ref}" in loaded
            facts = json.loads(docker(dockerd, "image", "inspect", ref))[0]
            assert (facts["Os"], facts["Architecture"]) == ("linux", arch)
            assert facts["Id"] == listed[(name, platform)]["digest"]
            assert listed[(name, platform)]["base"] == f"docker-archive:{_base(doc)}"


def _base(doc: dict[str, Any]) -> str:
    base: str = doc["images"][0]["base"]
    return base.removeprefix("docker-archive:")


def test_amd64_images_run_and_apiserver_has_its_capability(
    dockerd: Dockerd, released: tuple[Path, dict[str, Any]]
) -> None:
    """kube-apiserver runs with no network and prints the version; kubectl via its entrypoint."""
    output, _ = released
    for name in ("kube-apiserver", "kubectl"):
        docker(dockerd, "load", stdin=_server_member(output, "linux/amd64", f"{name}.tar"))
    apiserver = "registry.k8s.io/kube-apiserver-amd64:v1.3.0"
    ran = docker(dockerd, "run", "--rm", "--network", "none", "--entrypoint",
                 "/usr/local/bin/kube-apiserver", apiserver, "--version")  # fmt: skip
    assert ran.decode().strip() == "kube-apiserver v1.3.0"
    ran = docker(
        dockerd,
        "run",
        "--rm",
        "--network",
        "none",
        "registry.k8s.io/kubectl-amd64:v1.3.0",
        "--version",
    )
    assert ran.decode().strip() == "kubectl v1.3.0"
    box = docker(dockerd, "create", "--entrypoint", "/usr/local/bin/kube-apiserver", apiserver)
    try:
        copied = docker(dockerd, "cp", f"{box.decode().strip()}:/usr/local/bin/kube-apiserver", "-")
    finally:
        docker(dockerd, "rm", box.decode().strip())
    with tarfile.open(fileobj=io.BytesIO(copied)) as tar:
        headers = tar.getmember("kube-apiserver").pax_headers
    raw = headers[oci.XATTR_CAPABILITY].encode("utf-8", "surrogateescape")
    assert raw == oci.vfs_cap_data([oci.CAP_NET_BIND_SERVICE])  # cap_net_bind_service=+ep


def test_packing_again_elsewhere_gives_identical_tarballs(
    dockerd: Dockerd, released: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """`kdist package` of the same binaries under another TZ and umask: byte-identical tarballs."""
    output, doc = released
    other = tmp_path / "out"
    shutil.copytree(output / "dockerized" / "bin", other / "dockerized" / "bin")
    env = {**dockerd.env(), "TZ": "Pacific/Chatham",
           "KUBE_GORUNNER_IMAGE": f"docker-archive:{_base(doc)}",
           "KUBE_PROXY_BASE_IMAGE": f"docker-archive:{_base(doc)}"}  # fmt: skip
    source = Path(doc["output"]).parent
    ran = kdist("package", "--source", source, "--output", other, "--platforms", PLATFORMS,
                "--json", env=env, umask=0o077)  # fmt: skip
    assert ran.code == 0, ran.stderr
    first = (output / "release-tars" / "SHA256SUMS").read_text()
    assert (other / "release-tars" / "SHA256SUMS").read_text() == first
    assert "kubernetes-server-linux-arm64.tar.gz" in first


def test_local_daemon_image_is_a_base(
    dockerd: Dockerd, base_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local image name is read from the daemon; another platform of it is refused."""
    monkeypatch.setenv("DOCKER_HOST", dockerd.url)
    found = bases.resolve(BASE, Platform("linux", "amd64"), tmp_path, docker_save=save_image)
    assert found.origin == "the local Docker daemon" and len(found.layers) == 1
    with pytest.raises(bases.BaseImageError, match="no linux/arm64 variant"):
        bases.resolve(BASE, Platform("linux", "arm64"), tmp_path, docker_save=save_image)


def test_missing_base_fails_before_any_build(dockerd: Dockerd, tmp_path: Path) -> None:
    """A base image nobody has stops the release at once, naming it and where kdist looked."""
    source = make_project("kubernetes", tmp_path / "kubernetes")
    env = {**dockerd.env(), "KUBE_GORUNNER_IMAGE": "kdist-test/missing:1"}
    ran = release(source, platforms=PLATFORMS, env=env, json=False)
    assert ran.code == 2, ran.stderr
    assert "kdist-test/missing:1" in ran.stderr
    assert "KUBE_GORUNNER_IMAGE from the environment" in ran.stderr
    assert "has no image kdist-test/missing:1" in ran.stderr  # the local daemon was asked
    assert "registry-1.docker.io" in ran.stderr  # and the registry, which is not reachable here
    assert not (source / "_output" / "logs").exists()  # nothing was built


def test_dry_run_lists_images_with_base_and_tag(k8s_source: Path) -> None:
    """-n lists each image with its tag and base image, and builds nothing."""
    ran = kdist("release", "-n", "--source", k8s_source, "--platforms", "linux/arm64")
    assert ran.code == 0, ran.stderr
    assert (
        "image: registry.k8s.io/kube-apiserver-arm64:v1.3.0 on scratch (KUBE_GORUNNER_IMAGE from the profile)"
        in ran.stdout
    )
    ran = kdist(
        "release", "-n", "--no-images", "--source", k8s_source, "--platforms", "linux/arm64"
    )
    assert "image:" not in ran.stdout
