"""Server images without a daemon: the archive writer, base image sources, names and registries."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from kdist.errors import ConfigError
from kdist.model import Platform
from kdist.packaging import bases, images, oci, registry

EPOCH = 1_767_323_045
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
VERSION = "v1.3.0-alpha.1.5+0123456789abcd"
TAG = "v1.3.0-alpha.1.5_0123456789abcd"

# BuildKit's security descriptors for files it adds to Windows layers (util/winlayers).
BUILDKIT_FILE_SD = (
    "AQAEgBQAAAAkAAAAAAAAADAAAAABAgAAAAAABSAAAAAgAgAAAQEAAAAAAAUSAAAAAgBMAAMAAAAAABgA/wEfAAECAAAAA"
    "AAFIAAAACACAAAAABQA/wEfAAEBAAAAAAAFEgAAAAAAGACpABIAAQIAAAAAAAUgAAAAIQIAAA=="
)
BUILDKIT_DIR_SD = (
    "AQAEgBQAAAAkAAAAAAAAADAAAAABAgAAAAAABSAAAAAgAgAAAQEAAAAAAAUSAAAAAgCoAAcAAAAAAxgA/wEfAAECAAAAA"
    "AAFIAAAACACAAAAAxQA/wEfAAEBAAAAAAAFEgAAAAAAGAD/AR8AAQIAAAAAAAUgAAAAIAIAAAALFAAAAAAQAQEAAAAAAAMA"
    "AAAAAAMYAKkAEgABAgAAAAAABSAAAAAhAgAAAAIYAAQAAAABAgAAAAAABSAAAAAhAgAAAAIYAAIAAAABAgAAAAAABSAAAA"
    "AhAgAA"
)


# ---------------------------------------------------------------------------------------------
# Helpers: base images made with tarfile and json only, independent of the writer under test


def _tar(files: Mapping[str, bytes | str]) -> bytes:
    """A layer tar: bytes are files, a str is a symlink target."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(body, str):
                info.type, info.linkname = tarfile.SYMTYPE, body
                tar.addfile(info)
            else:
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def _config(platform: Platform, layers: list[bytes], **extra: object) -> dict[str, object]:
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    return {
        "architecture": platform.arch,
        "os": platform.os,
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        **extra,
    }


def docker_archive(
    path: Path, images_: list[tuple[str, Platform, list[bytes]]], gz: bool = False
) -> Path:
    """A `docker save`-style archive (legacy layout) holding the given images."""
    members: dict[str, bytes] = {}
    manifest = []
    for tag, platform, layers in images_:
        config = json.dumps(_config(platform, layers)).encode()
        cname = hashlib.sha256(config).hexdigest() + ".json"
        members[cname] = config
        names = []
        for layer in layers:
            name = hashlib.sha256(layer).hexdigest() + "/layer.tar"
            members[name] = gzip.compress(layer, mtime=0) if gz else layer
            names.append(name)
        manifest.append({"Config": cname, "RepoTags": [tag], "Layers": names})
    members["manifest.json"] = json.dumps(manifest).encode()
    path.write_bytes(_tar(members))
    return path


def oci_layout(root: Path, variants: list[tuple[Platform, list[bytes]]], ref: str = "v1") -> Path:
    """An OCI layout whose index points at an image index of one manifest per platform."""
    blobs = root / "blobs/sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    manifests = []
    for platform, layers in variants:
        config = put(json.dumps(_config(platform, layers)).encode())
        layer_descs = [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(gzip.compress(x))}
            for x in layers
        ]
        body = {"schemaVersion": 2, "config": config, "layers": layer_descs}
        desc = put(json.dumps(body).encode())
        manifests.append(
            {
                "mediaType": oci.OCI_MANIFEST,
                **desc,
                "platform": {"os": platform.os, "architecture": platform.arch},
            }
        )
    index = put(json.dumps({"schemaVersion": 2, "manifests": manifests}).encode())
    top = {"mediaType": oci.OCI_INDEX, **index, "annotations": {oci.ANNOTATION_REF: ref}}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    (root / "oci-layout").write_bytes(oci.OCI_LAYOUT)
    return root


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    """The members of a tar file by name."""
    with tarfile.open(archive) as tar:
        return {m.name: m for m in tar.getmembers()}


def read(archive: Path, name: str) -> bytes:
    """One member's bytes."""
    with tarfile.open(archive) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


def layer_members(archive: Path, digest: str) -> dict[str, tarfile.TarInfo]:
    """The members of one layer blob inside an image archive."""
    with tarfile.open(
        fileobj=io.BytesIO(read(archive, f"blobs/sha256/{digest.split(':')[1]}"))
    ) as tar:
        return {m.name: m for m in tar.getmembers()}


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    """A stand-in binary."""
    path = tmp_path / "bin"
    path.write_bytes(b"\x7fELF stand-in" * 100)
    path.chmod(0o700)
    return path


def settings(**values: str) -> images.ImageSettings:
    """Image settings as if given in the profile."""
    return images.ImageSettings.load({}, values)


def build(
    tmp_path: Path, spec: images.ImageSpec, base: bases.BaseImage, binary: Path
) -> images.BuiltImage:
    """Build one image into tmp_path/out."""
    out = tmp_path / "out"
    out.mkdir(parents=True, exist_ok=True)
    return images.build_image(spec, base, binary, out / spec.archive, tmp_path / "work", EPOCH)


def spec_of(name: str, platform: Platform = AMD64, **values: str) -> images.ImageSpec:
    """The spec of one image of a release of `platform`."""
    specs = images.image_specs(settings(**values), VERSION, [platform])
    return next(s for s in specs if s.name == name and s.platform == platform)


# ---------------------------------------------------------------------------------------------
# Bytes that must be exact


def test_capability_bytes_are_what_setcap_writes(tmp_path: Path) -> None:
    """vfs_cap_data for cap_net_bind_service=+ep is the value setcap(8) stores in the xattr."""
    want = bytes.fromhex("0100000200040000000000000000000000000000")
    assert oci.vfs_cap_data([oci.CAP_NET_BIND_SERVICE]) == want
    setcap = shutil.which("setcap")
    if setcap is None or os.geteuid() != 0:
        pytest.skip("setcap needs root and libcap2-bin")
    target = tmp_path / "f"
    target.write_bytes(b"x")
    subprocess.run([setcap, "cap_net_bind_service=+ep", str(target)], check=True)
    assert os.getxattr(target, "security.capability") == want


def test_windows_security_descriptors_match_buildkit() -> None:
    """The ACLs of Windows layer entries are the bytes BuildKit writes for files and dirs."""
    assert base64.b64encode(oci.security_descriptor(oci.FILE_ACES)).decode() == BUILDKIT_FILE_SD
    assert base64.b64encode(oci.security_descriptor(oci.DIR_ACES)).decode() == BUILDKIT_DIR_SD


# ---------------------------------------------------------------------------------------------
# The archive


def test_archive_structure_loads_as_docker_save(tmp_path: Path, binary: Path) -> None:
    """manifest.json, repositories, index.json and blobs agree; entries are sorted, owned by root."""
    built = build(tmp_path, spec_of("kube-scheduler"), bases.scratch(AMD64), binary)
    found = members(built.path)
    assert list(found) == sorted(found, key=lambda n: n.split("/"))
    assert {m.uid for m in found.values()} == {0} and {m.mtime for m in found.values()} == {EPOCH}
    manifest = json.loads(read(built.path, "manifest.json"))
    assert manifest[0]["RepoTags"] == [f"registry.k8s.io/kube-scheduler-amd64:{TAG}"]
    config_raw = read(built.path, manifest[0]["Config"])
    assert "sha256:" + hashlib.sha256(config_raw).hexdigest() == built.image_id
    config = json.loads(config_raw)
    assert (config["os"], config["architecture"], config["created"]) == (
        "linux",
        "amd64",
        "2026-01-02T03:04:05Z",
    )
    (layer_path,) = manifest[0]["Layers"]
    layer = read(built.path, layer_path)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    repos = json.loads(read(built.path, "repositories"))
    assert repos == {"registry.k8s.io/kube-scheduler-amd64": {TAG: layer_path.rsplit("/", 1)[1]}}
    index = json.loads(read(built.path, "index.json"))
    (desc,) = index["manifests"]
    assert desc["digest"] == built.manifest_digest
    assert desc["annotations"][oci.ANNOTATION_NAME] == manifest[0]["RepoTags"][0]
    oci_manifest = json.loads(read(built.path, "blobs/sha256/" + desc["digest"].split(":")[1]))
    assert oci_manifest["config"]["digest"] == built.image_id
    assert read(built.path, "oci-layout") == oci.OCI_LAYOUT


def test_same_inputs_same_bytes_whatever_tz_and_umask(tmp_path: Path, binary: Path) -> None:
    """Two builds under a different TZ and umask, at different times, are byte-identical."""
    spec = spec_of("kube-apiserver")
    first = build(tmp_path / "a", spec, bases.scratch(AMD64), binary)
    old_tz, old_umask = os.environ.get("TZ"), os.umask(0o077)
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    try:
        binary.touch()
        second = build(tmp_path / "b", spec, bases.scratch(AMD64), binary)
    finally:
        os.umask(old_umask)
        if old_tz is None:
            os.environ.pop("TZ")
        else:
            os.environ["TZ"] = old_tz
        time.tzset()
    assert first.path.read_bytes() == second.path.read_bytes()
    assert (first.sha256, first.image_id) == (second.sha256, second.image_id)


def test_apiserver_layer_carries_the_capability(tmp_path: Path, binary: Path) -> None:
    """kube-apiserver is in /usr/local/bin, 0755, with security.capability in a pax header."""
    built = build(tmp_path, spec_of("kube-apiserver"), bases.scratch(AMD64), binary)
    layer = layer_members(
        built.path,
        json.loads(read(built.path, "manifest.json"))[0]["Layers"][0].replace(
            "blobs/sha256/", "sha256:"
        ),
    )
    entry = layer["usr/local/bin/kube-apiserver"]
    assert entry.mode == 0o755 and entry.uid == 0
    raw = entry.pax_headers[oci.XATTR_CAPABILITY].encode("utf-8", "surrogateescape")
    assert raw == oci.vfs_cap_data([oci.CAP_NET_BIND_SERVICE])
    other = build(tmp_path, spec_of("kube-proxy"), bases.scratch(AMD64), binary)
    proxy = layer_members(
        other.path,
        json.loads(read(other.path, "manifest.json"))[0]["Layers"][0].replace(
            "blobs/sha256/", "sha256:"
        ),
    )
    assert oci.XATTR_CAPABILITY not in proxy["usr/local/bin/kube-proxy"].pax_headers


def test_kubectl_goes_to_bin_with_entrypoint_through_a_merged_usr(
    tmp_path: Path, binary: Path
) -> None:
    """With /bin -> usr/bin in the base, kubectl lands in usr/bin (not a new /bin hiding it)."""
    archive = docker_archive(
        tmp_path / "base.tar", [("base:1", AMD64, [_tar({"usr/bin/sh": b"sh", "bin": "usr/bin"})])]
    )
    base = bases.resolve(f"docker-archive:{archive}", AMD64, tmp_path / "cache")
    built = build(tmp_path, spec_of("kubectl"), base, binary)
    manifest = json.loads(read(built.path, "manifest.json"))[0]
    assert len(manifest["Layers"]) == 2
    layer = layer_members(built.path, manifest["Layers"][1].replace("blobs/sha256/", "sha256:"))
    assert "usr/bin/kubectl" in layer and "bin" not in layer
    config = json.loads(read(built.path, manifest["Config"]))
    assert config["config"]["Entrypoint"] == ["/bin/kubectl"]
    assert "Cmd" not in config["config"]  # ENTRYPOINT resets the base's CMD
    assert config["config"]["Env"] == ["PATH=/bin"]  # the rest of the base's config stays
    on_scratch = build(tmp_path / "s", spec_of("kubectl"), bases.scratch(AMD64), binary)
    layer = json.loads(read(on_scratch.path, "manifest.json"))[0]["Layers"][0]
    assert "bin/kubectl" in layer_members(
        on_scratch.path, layer.replace("blobs/sha256/", "sha256:")
    )


def test_windows_kube_proxy_layer(tmp_path: Path, binary: Path) -> None:
    """Windows kube-proxy: Files/ and Hives/, Windows attributes and ACLs, its entrypoint."""
    platform = Platform("windows", "amd64")
    specs = images.image_specs(settings(KUBE_BUILD_WINDOWS="y"), VERSION, [AMD64, platform])
    spec = next(s for s in specs if s.platform == platform)
    assert (spec.archive, spec.tags) == (
        "kube-proxy.exe.tar",
        (f"registry.k8s.io/kube-proxy-windows-amd64:{TAG}",),
    )
    built = build(tmp_path, spec, bases.scratch(platform), binary)
    manifest = json.loads(read(built.path, "manifest.json"))[0]
    layer = layer_members(built.path, manifest["Layers"][0].replace("blobs/sha256/", "sha256:"))
    assert set(layer) == {"Files", "Hives", "Files/kube-proxy", "Files/kube-proxy/kube-proxy.exe"}
    exe = layer["Files/kube-proxy/kube-proxy.exe"].pax_headers
    assert exe[oci.WIN_FILEATTR] == "32" and exe[oci.WIN_RAWSD] == BUILDKIT_FILE_SD
    assert layer["Files/kube-proxy"].pax_headers[oci.WIN_RAWSD] == BUILDKIT_DIR_SD
    config = json.loads(read(built.path, manifest["Config"]))["config"]
    assert config["Entrypoint"] == ["c:/hpc/kube-proxy/kube-proxy.exe"]
    assert config["Env"] == [f"PATH={images.WINDOWS_PATH}"]


# ---------------------------------------------------------------------------------------------
# Names, tags and settings


def test_names_and_tags_as_upstream() -> None:
    """<bin>-<arch>:<version, + as _>, the extra KUBE_DOCKER_REGISTRY tag, the files' names."""
    specs = images.image_specs(settings(), VERSION, [AMD64, ARM64, Platform("linux", "386")])
    assert [(s.name, str(s.platform)) for s in specs][:2] == [
        ("kube-apiserver", "linux/amd64"),
        ("kube-controller-manager", "linux/amd64"),
    ]
    assert len(specs) == 10  # 5 images on each server platform; linux/386 has none
    proxy = next(s for s in specs if s.name == "kube-proxy" and s.platform == ARM64)
    assert proxy.tags == (f"registry.k8s.io/kube-proxy-arm64:{TAG}",)
    assert (proxy.archive, proxy.tag_file, proxy.path) == (
        "kube-proxy.tar",
        "kube-proxy.docker_tag",
        "/usr/local/bin/kube-proxy",
    )
    extra = spec_of(
        "kube-proxy", KUBE_DOCKER_REGISTRY="example.com/k8s", KUBE_DOCKER_IMAGE_TAG="v9"
    )
    assert extra.tags == (
        f"registry.k8s.io/kube-proxy-amd64:{TAG}",
        "example.com/k8s/kube-proxy-amd64:v9",
    )
    same = spec_of("kube-proxy", KUBE_DOCKER_REGISTRY="registry.k8s.io")
    assert len(same.tags) == 1


def test_base_image_variables_environment_then_profile_then_default() -> None:
    """Per-image variables beat KUBE_GORUNNER_IMAGE; the environment beats the profile."""
    env = {"KUBE_GORUNNER_IMAGE": "env-runner:1", "KUBECTL_BASE_IMAGE": ""}
    profile = {"KUBE_GORUNNER_IMAGE": "profile-runner:1", "KUBE_SCHEDULER_BASE_IMAGE": "sched:1"}
    s = images.ImageSettings.load(env, profile)
    assert s.base("kube-apiserver", AMD64) == (
        "env-runner:1",
        "KUBE_GORUNNER_IMAGE from the environment",
    )
    assert s.base("kube-scheduler", AMD64) == (
        "sched:1",
        "KUBE_SCHEDULER_BASE_IMAGE from the profile",
    )
    assert s.base("kubectl", AMD64)[0] == "env-runner:1"  # empty means unset
    assert s.base("kube-proxy", AMD64) == (
        images.DEFAULTS["KUBE_PROXY_BASE_IMAGE"],
        "KUBE_PROXY_BASE_IMAGE (default)",
    )


def test_windows_needs_the_windows_platform() -> None:
    """KUBE_BUILD_WINDOWS=y without windows/amd64 in the release is a configuration error."""
    with pytest.raises(ConfigError, match="windows/amd64"):
        images.image_specs(settings(KUBE_BUILD_WINDOWS="y"), VERSION, [AMD64])


# ---------------------------------------------------------------------------------------------
# Base image sources


def test_docker_archive_picks_the_platform_and_checks_layers(tmp_path: Path) -> None:
    """A two-platform archive gives each platform its own image; gzip layers are unpacked."""
    amd, arm = _tar({"a": b"amd64"}), _tar({"a": b"arm64"})
    archive = docker_archive(
        tmp_path / "b.tar", [("b:amd", AMD64, [amd]), ("b:arm", ARM64, [arm])], gz=True
    )
    got = bases.resolve(f"docker-archive:{archive}", ARM64, tmp_path / "cache")
    assert got.layers[0].path.read_bytes() == arm
    assert got.layers[0].digest == "sha256:" + hashlib.sha256(arm).hexdigest()
    named = bases.resolve(f"docker-archive:{archive}:b:amd", AMD64, tmp_path / "cache")
    assert named.layers[0].path.read_bytes() == amd
    with pytest.raises(
        bases.BaseImageError,
        match=r"no linux/s390x variant .* \(it has: linux/amd64, linux/arm64\)",
    ):
        bases.resolve(f"docker-archive:{archive}", Platform("linux", "s390x"), tmp_path / "cache")


def test_docker_archive_with_a_wrong_layer_is_refused(tmp_path: Path) -> None:
    """A layer whose content is not the config's diff id is an error, not a silent base."""
    archive = docker_archive(tmp_path / "b.tar", [("b:1", AMD64, [_tar({"a": b"x"})])])
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    layer_name = next(n for n in names if n.endswith("layer.tar"))
    rebuilt = {n: read(archive, n) for n in names}
    rebuilt[layer_name] = _tar({"a": b"tampered"})
    archive.write_bytes(_tar(rebuilt))
    with pytest.raises(bases.BaseImageError, match="its config says"):
        bases.resolve(f"docker-archive:{archive}", AMD64, tmp_path / "cache")


def test_oci_layout_follows_an_index_to_the_platform(tmp_path: Path) -> None:
    """oci-layout:PATH[:REF] reads an index of platform manifests, with gzip layers."""
    amd, arm = _tar({"x": b"1"}), _tar({"x": b"2"})
    root = oci_layout(tmp_path / "layout", [(AMD64, [amd]), (ARM64, [arm])])
    got = bases.resolve(f"oci-layout:{root}:v1", ARM64, tmp_path / "cache")
    assert got.layers[0].path.read_bytes() == arm and got.origin == f"OCI layout {root}"
    with pytest.raises(bases.BaseImageError, match="no image named v2"):
        bases.resolve(f"oci-layout:{root}:v2", ARM64, tmp_path / "cache")


def test_missing_base_names_the_image_and_where_kdist_looked(tmp_path: Path) -> None:
    """The preflight error names the image, its variable and every place that was tried."""
    spec = spec_of("kube-apiserver", KUBE_GORUNNER_IMAGE="docker-archive:/nonexistent/base.tar")
    with pytest.raises(bases.BaseImageError) as err:
        images.preflight([spec], tmp_path / "cache")
    assert "kube-apiserver image (KUBE_GORUNNER_IMAGE from the profile)" in str(err.value)
    assert "/nonexistent/base.tar" in str(err.value)

    def no_docker(name: str) -> Iterator[bytes]:
        raise LookupError("no such image")

    def no_registry(ref: str, platform: Platform, cache: Path) -> bases.BaseImage:
        raise LookupError("registry example.com is not reachable (no network)")

    ref = spec_of("kube-proxy", KUBE_PROXY_BASE_IMAGE="example.com/base:1")
    with pytest.raises(bases.BaseImageError) as err:
        images.preflight(
            [ref], tmp_path / "cache", docker_save=no_docker, registry_pull=no_registry
        )
    text = str(err.value)
    assert "example.com/base:1" in text and "not in the local Docker daemon (no such image)" in text
    assert "registry example.com is not reachable" in text


# ---------------------------------------------------------------------------------------------
# Registry


def test_unreachable_registry_says_so(tmp_path: Path) -> None:
    """A registry that cannot be reached is named in a LookupError, quickly."""
    with pytest.raises(LookupError, match=r"registry 127\.0\.0\.1:9 is not reachable"):
        registry.pull("127.0.0.1:9/base:v1", AMD64, tmp_path / "cache", timeout=2)


def test_reference_parsing() -> None:
    """Docker Hub names, ports, tags and digests split as docker does."""
    assert registry.split_reference("busybox") == (
        "registry-1.docker.io",
        "library/busybox",
        "latest",
    )
    assert registry.split_reference("gcr.io/distroless/static-debian13") == (
        "gcr.io",
        "distroless/static-debian13",
        "latest",
    )
    assert registry.split_reference("localhost:5000/a/b:v2") == ("localhost:5000", "a/b", "v2")
    digest = "sha256:" + "0" * 64
    assert registry.split_reference(f"registry.k8s.io/x:v1@{digest}") == (
        "registry.k8s.io",
        "x",
        digest,
    )
