"""Kubernetes server images: which ones, on which base, with which names, and building them.

What upstream's `kube::release::create_docker_images_for_server` makes with `docker buildx`
(reference §10), written here directly as image archives (:mod:`kdist.packaging.oci`): no
Docker on the packaging node, no command run for a foreign architecture, the same bytes on
any machine and any day. Per server platform: kube-apiserver, kube-controller-manager,
kube-scheduler, kube-proxy and kubectl, each its base image plus one layer holding the binary

* in `/usr/local/bin/` (build/server-image/Dockerfile);
* kubectl in `/bin/` with `ENTRYPOINT ["/bin/kubectl"]` (build/server-image/kubectl/Dockerfile);
* kube-apiserver with the file capability `cap_net_bind_service=+ep`, which upstream applies
  with `setcap` in a build stage (build/server-image/kube-apiserver/Dockerfile) and kdist
  writes as the `security.capability` xattr of the layer entry;
* with `KUBE_BUILD_WINDOWS=y`, kube-proxy for windows/amd64 in `/kube-proxy/` with its
  Windows entrypoint (build/server-image/kube-proxy/Dockerfile_windows).

Names: `registry.k8s.io/<bin>-<arch>:<version with + as _>` (`<bin>-windows-<arch>` on
Windows), plus `${KUBE_DOCKER_REGISTRY}/<bin>-<arch>:${KUBE_DOCKER_IMAGE_TAG}` when that
differs; `<bin>.docker_tag` holds the tag and a newline.
"""

from __future__ import annotations

import copy
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from kdist.config import kubernetes as k8s
from kdist.config.profile import IMAGE_KEYS
from kdist.errors import ConfigError, PackageError
from kdist.model import Platform
from kdist.packaging import bases, oci
from kdist.packaging.archive import ArchiveEntry, EntryKind

RELEASE_IMAGES = "release-images"  # OUTPUT/release-images/<arch>/<bin>.tar, as upstream
REGISTRY = "registry.k8s.io"
BASE_IMAGE_REGISTRY = "registry.k8s.io/build-image"
GORUNNER = "KUBE_GORUNNER_IMAGE"
PROXY_BASE = "KUBE_PROXY_BASE_IMAGE"
WINDOWS_PROXY_BASE = "KUBE_PROXY_WINDOWS_BASE_IMAGE"
# image -> the variable naming its base image; unset, it falls back as upstream's common.sh.
BASE_VARIABLES = {
    "kube-apiserver": "KUBE_APISERVER_BASE_IMAGE",
    "kube-controller-manager": "KUBE_CONTROLLER_MANAGER_BASE_IMAGE",
    "kube-scheduler": "KUBE_SCHEDULER_BASE_IMAGE",
    "kube-proxy": PROXY_BASE,
    "kubectl": "KUBECTL_BASE_IMAGE",
}
DEFAULTS = {
    GORUNNER: "gcr.io/distroless/static-debian13",  # static binaries (reference §10)
    PROXY_BASE: f"{BASE_IMAGE_REGISTRY}/distroless-iptables:v0.8.7",
    WINDOWS_PROXY_BASE: (
        "mcr.microsoft.com/oss/kubernetes/windows-host-process-containers-base-image:v1.0.0"
    ),
}
SETTINGS = IMAGE_KEYS  # what the environment or a profile's `images:` may set
WINDOWS = Platform("windows", "amd64")
WINDOWS_PATH = r"C:\Windows\system32;C:\Windows;C:\WINDOWS\System32\WindowsPowerShell\v1.0\;"


@dataclass(frozen=True)
class ImageSettings:
    """The image variables of a release: each value and where it came from."""

    values: Mapping[str, str]
    origins: Mapping[str, str]  # variable -> "environment" | "profile"

    @classmethod
    def load(cls, environ: Mapping[str, str], profile: Mapping[str, str]) -> ImageSettings:
        """The environment wins over the profile (as `make VAR=...` does); empty means unset."""
        values: dict[str, str] = {}
        origins: dict[str, str] = {}
        for key in SETTINGS:
            for origin, source in (("environment", environ), ("profile", profile)):
                if source.get(key):
                    values[key], origins[key] = source[key], origin
                    break
        return cls(values, origins)

    @property
    def windows(self) -> bool:
        """KUBE_BUILD_WINDOWS=y (or Y): also the Windows kube-proxy image."""
        return self.values.get("KUBE_BUILD_WINDOWS", "n") in ("y", "Y")

    def base(self, name: str, platform: Platform) -> tuple[str, str]:
        """The base image of image `name` on `platform`, and which variable said so."""
        if platform.os == "windows":
            return self._value(WINDOWS_PROXY_BASE)
        variable = BASE_VARIABLES[name]
        if variable in self.values or variable == PROXY_BASE:
            return self._value(variable)
        return self._value(GORUNNER)

    def _value(self, variable: str) -> tuple[str, str]:
        if variable in self.values:
            return self.values[variable], f"{variable} from the {self.origins[variable]}"
        return DEFAULTS[variable], f"{variable} (default)"


@dataclass(frozen=True)
class ImageSpec:
    """One image to make: binary, platform, base and names."""

    name: str  # kube-apiserver
    platform: Platform
    base: str
    base_from: str  # e.g. "KUBE_GORUNNER_IMAGE (default)"
    docker_tag: str
    tags: tuple[str, ...]  # full references, the registry.k8s.io one first

    @property
    def binary(self) -> str:
        """The file name of the binary (`.exe` on Windows)."""
        return self.name + self.platform.exe_suffix

    @property
    def archive(self) -> str:
        """`<binary>.tar`, as upstream names it."""
        return f"{self.binary}.tar"

    @property
    def tag_file(self) -> str:
        """`<binary>.docker_tag`."""
        return f"{self.binary}.docker_tag"

    @property
    def path(self) -> str:
        """Where the binary goes in the image."""
        if self.platform.os == "windows":
            return f"/{self.name}/{self.binary}"
        return f"/bin/{self.name}" if self.name == "kubectl" else f"/usr/local/bin/{self.name}"

    @property
    def entrypoint(self) -> tuple[str, ...] | None:
        """The entrypoint the image sets (None: the base's stays)."""
        if self.platform.os == "windows":
            return (f"c:/hpc{self.path}",)
        return ("/bin/kubectl",) if self.name == "kubectl" else None

    @property
    def capabilities(self) -> tuple[int, ...]:
        """File capabilities of the binary (kube-apiserver binds ports below 1024 as non-root)."""
        return (oci.CAP_NET_BIND_SERVICE,) if self.name == "kube-apiserver" else ()


def docker_tag(version: str) -> str:
    """`${KUBE_GIT_VERSION/+/_}`: tags cannot hold '+'."""
    if not version:
        msg = "no version: image tags are made from it"
        raise ConfigError(msg)
    return version.replace("+", "_", 1)


def image_specs(
    settings: ImageSettings, version: str, platforms: Sequence[Platform]
) -> tuple[ImageSpec, ...]:
    """Every image a release of `platforms` makes, in platform then upstream order."""
    tag = docker_tag(version)
    wanted: list[tuple[Platform, tuple[str, ...]]] = [
        (p, k8s.SERVER_IMAGE_BINARIES) for p in k8s.classes_for(platforms).server
    ]
    if settings.windows:
        if WINDOWS not in platforms:
            msg = "KUBE_BUILD_WINDOWS=y: the Windows kube-proxy image needs windows/amd64 built"
            raise ConfigError(msg)
        wanted.append((WINDOWS, ("kube-proxy",)))
    specs = []
    for platform, names in wanted:
        for name in names:
            base, base_from = settings.base(name, platform)
            specs.append(
                ImageSpec(
                    name, platform, base, base_from, tag, _tags(settings, name, platform, tag)
                )
            )
    return tuple(specs)


def _tags(settings: ImageSettings, name: str, platform: Platform, tag: str) -> tuple[str, ...]:
    repo = (
        f"{name}-windows-{platform.arch}" if platform.os == "windows" else f"{name}-{platform.arch}"
    )
    main = f"{REGISTRY}/{repo}:{tag}"
    extra = (
        f"{settings.values.get('KUBE_DOCKER_REGISTRY', REGISTRY)}/{repo}:"
        f"{settings.values.get('KUBE_DOCKER_IMAGE_TAG', tag)}"
    )
    return (main,) if extra == main else (main, extra)


# ---------------------------------------------------------------------------------------------
# Preflight: find every base image before anything is built


BaseKey = tuple[str, Platform]


def preflight(
    specs: Sequence[ImageSpec],
    cache: Path,
    *,
    docker_save: bases.DockerSave | None = None,
    registry_pull: bases.RegistryPull | None = None,
) -> dict[BaseKey, bases.BaseImage]:
    """Resolve each distinct (base, platform) once; the error names the image and variable."""
    found: dict[BaseKey, bases.BaseImage] = {}
    for spec in specs:
        key = (spec.base, spec.platform)
        if key in found:
            continue
        try:
            found[key] = bases.resolve(
                spec.base,
                spec.platform,
                cache,
                docker_save=docker_save,
                registry_pull=registry_pull,
            )
        except bases.BaseImageError as exc:
            msg = f"{spec.name} image ({spec.base_from}): {exc}"
            raise bases.BaseImageError(msg) from exc
    return found


# ---------------------------------------------------------------------------------------------
# Building one image


@dataclass(frozen=True)
class BuiltImage:
    """An image archive that was written, and what identifies it."""

    spec: ImageSpec
    path: Path
    image_id: str  # digest of the config: what `docker image inspect` shows as Id after a load
    manifest_digest: str
    base_digest: str
    sha256: str  # of the .tar file
    size: int


def build_image(
    spec: ImageSpec, base: bases.BaseImage, binary: Path, dest: Path, work: Path, mtime: int
) -> BuiltImage:
    """Write the image archive of `spec` to `dest`: the base's layers plus one for the binary."""
    work.mkdir(parents=True, exist_ok=True)
    target = _resolved_path(spec.path, base) if spec.platform.os == "linux" else spec.path
    layer = oci.write_layer(
        work / f"{spec.binary}.layer.tar", _layer(spec, binary, target, mtime), mtime
    )
    config = image_config(spec, base, layer, mtime)
    try:
        written = oci.write_archive(dest, config, (*base.layers, layer), spec.tags, mtime)
    finally:
        layer.path.unlink(missing_ok=True)
    blob = oci.hash_file(dest)
    return BuiltImage(
        spec, dest, written.image_id, written.manifest_digest, base.digest, blob.digest, blob.size
    )


def _layer(spec: ImageSpec, binary: Path, target: str, mtime: int) -> list[ArchiveEntry]:
    parts = PurePosixPath(target).relative_to("/").parts
    if spec.platform.os == "windows":

        def win(kind: EntryKind) -> dict[str, bytes]:
            return oci.windows_pax(kind, mtime)

        entries = [
            ArchiveEntry.directory(
                "Hives", oci.windows_pax(EntryKind.DIR, mtime, descriptor=False)
            ),
            ArchiveEntry.directory(
                "Files", oci.windows_pax(EntryKind.DIR, mtime, descriptor=False)
            ),
        ]
        entries += [
            ArchiveEntry.directory("/".join(("Files", *parts[:i])), win(EntryKind.DIR))
            for i in range(1, len(parts))
        ]
        entries.append(
            ArchiveEntry.file("/".join(("Files", *parts)), binary, 0o755, win(EntryKind.FILE))
        )
        return entries
    pax = {}
    if spec.capabilities:
        pax[oci.XATTR_CAPABILITY] = oci.vfs_cap_data(spec.capabilities)
    return [ArchiveEntry.file("/".join(parts), binary, 0o755, pax)]


def image_config(
    spec: ImageSpec, base: bases.BaseImage, layer: oci.Blob, mtime: int
) -> dict[str, Any]:
    """The base's config with the new layer, the build time and the Dockerfile's settings."""
    config = copy.deepcopy(base.config)
    created = oci.rfc3339(mtime)
    config["created"] = created
    diff_ids = [b.digest for b in base.layers]
    config["rootfs"] = {"type": "layers", "diff_ids": [*diff_ids, layer.digest]}
    history = list(config.get("history") or [])
    history.append(
        {"created": created, "created_by": f"COPY {spec.binary} {spec.path}", "comment": "kdist"}
    )
    inner = dict(config.get("config") or {})
    if spec.platform.os == "windows":
        env = [e for e in inner.get("Env") or [] if not e.upper().startswith("PATH=")]
        inner["Env"] = [*env, f"PATH={WINDOWS_PATH}"]
    if spec.entrypoint is not None:
        inner["Entrypoint"] = list(spec.entrypoint)
        inner.pop("Cmd", None)  # a Dockerfile ENTRYPOINT resets the base's CMD
        history.append(
            {
                "created": created,
                "created_by": f"ENTRYPOINT {list(spec.entrypoint)}",
                "comment": "kdist",
                "empty_layer": True,
            }
        )
    config["config"] = inner
    config["history"] = history
    return config


# ---------------------------------------------------------------------------------------------
# Where a path lands in the base: /bin may be a symlink (merged /usr), and a layer that put a
# directory there would hide everything the base has in /usr/bin.

_MAX_LINKS = 40


def base_tree(base: bases.BaseImage) -> dict[str, tarfile.TarInfo]:
    """The base's merged file system as path -> member (whiteouts applied), for lookups."""
    tree: dict[str, tarfile.TarInfo] = {}
    for blob in base.layers:
        with tarfile.open(blob.path) as layer:
            for member in layer:
                path = str(PurePosixPath("/", member.name))
                parent, _, leaf = path.rpartition("/")
                if leaf == ".wh..wh..opq":
                    for known in [k for k in tree if k.startswith(f"{parent}/")]:
                        del tree[known]
                elif leaf.startswith(".wh."):
                    gone = f"{parent}/{leaf[4:]}"
                    for known in [k for k in tree if k == gone or k.startswith(f"{gone}/")]:
                        del tree[known]
                else:
                    tree[path] = member
    return tree


def _resolved_path(path: str, base: bases.BaseImage) -> str:
    """`path` with symlinks in its directories followed inside the base's file system."""
    if not base.layers:
        return path
    tree = base_tree(base)
    parts = list(PurePosixPath(path).parts[1:])
    done = PurePosixPath("/")
    hops = 0
    while len(parts) > 1:
        step = done / parts.pop(0)
        member = tree.get(str(step))
        if member is None or not member.issym():
            done = step
            continue
        hops += 1
        if hops > _MAX_LINKS:
            msg = f"too many symlinks resolving {path} in the base image {base.value}"
            raise PackageError(msg)
        link = PurePosixPath(member.linkname)
        restart = link if link.is_absolute() else done / link
        parts = [*_normal(restart).parts[1:], *parts]
        done = PurePosixPath("/")
    return str(_normal(done / parts[0]))


def _normal(path: PurePosixPath) -> PurePosixPath:
    out: list[str] = []
    for part in path.parts[1:]:
        if part == "..":
            if out:
                out.pop()
        elif part != ".":
            out.append(part)
    return PurePosixPath("/", *out)


# ---------------------------------------------------------------------------------------------
# A release's images: planned and with bases found before any build, built per platform


@dataclass(frozen=True)
class ImagePlan:
    """The images of one release and their resolved base images."""

    specs: tuple[ImageSpec, ...]
    base_images: Mapping[BaseKey, bases.BaseImage]

    def for_platform(self, platform: Platform) -> tuple[ImageSpec, ...]:
        """The images made from `platform`'s binaries."""
        return tuple(s for s in self.specs if s.platform == platform)

    def base_of(self, spec: ImageSpec) -> bases.BaseImage:
        """The resolved base image of `spec`."""
        return self.base_images[(spec.base, spec.platform)]

    def identity(self) -> list[list[str]]:
        """What the images depend on besides the binaries (for the journal's release key)."""
        return [
            [s.name, str(s.platform), s.base, self.base_of(s).digest, *s.tags] for s in self.specs
        ]


def build_platform(
    plan: ImagePlan, platform: Platform, bin_dir: Path, images_dir: Path, mtime: int
) -> list[BuiltImage]:
    """Build `platform`'s images into images_dir/<arch>/ (upstream's release-images layout)."""
    specs = plan.for_platform(platform)
    if not specs:
        return []
    dest = images_dir / platform.arch
    dest.mkdir(parents=True, exist_ok=True)
    work = images_dir / f".work-{platform.dashed}"
    built = []
    try:
        for spec in specs:
            binary = bin_dir / spec.binary
            if not binary.is_file() or binary.is_symlink():
                msg = f"{platform}: {binary} is missing; the {spec.name} image needs it"
                raise PackageError(msg)
            built.append(
                build_image(spec, plan.base_of(spec), binary, dest / spec.archive, work, mtime)
            )
    finally:
        if work.is_dir():
            for leftover in work.iterdir():
                leftover.unlink()
            work.rmdir()
    return built


def describe(built: BuiltImage, output: Path) -> dict[str, Any]:
    """One image in the run's JSON document."""
    spec = built.spec
    return {
        "name": spec.name,
        "platform": str(spec.platform),
        "tags": list(spec.tags),
        "docker_tag": spec.docker_tag,
        "base": spec.base,
        "base_from": spec.base_from,
        "base_digest": built.base_digest,
        "digest": built.image_id,
        "manifest_digest": built.manifest_digest,
        "archive": str(output / spec.platform.arch / spec.archive),
        "sha256": built.sha256.split(":", 1)[1],
        "size": built.size,
    }
