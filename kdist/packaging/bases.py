"""Base images: where a value like `docker-archive:base.tar` points, and its layers for a platform.

A base image value is one of

* ``scratch``: no layers at all (enough for static Go binaries);
* ``docker-archive:PATH[:REF]``: a `docker save` (or `kdist`) archive; REF picks one of several
  images in it, otherwise the image for the platform is chosen by its config;
* ``oci-layout:PATH[:REF]``: an OCI image layout directory; REF matches the
  ``org.opencontainers.image.ref.name`` annotation; image indexes are followed;
* anything else, a reference (``registry.k8s.io/build-image/go-runner:v2.4.0``): the local
  Docker daemon's image of that name when it has one, else the registry's.

Multi-platform bases (an index, or an archive with several images) give each platform its own
variant; a single-platform base for another architecture is an error, never an emulation.
Layers are unpacked (gzip is undone) into a cache named by diff id, and every one is checked
against the config's `rootfs.diff_ids`, so what goes into an image is exactly what the base
config promises.
"""

from __future__ import annotations

import itertools
import json
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kdist.errors import ConfigError
from kdist.model import Platform
from kdist.packaging.oci import Blob, canonical_json, copy_chunks, sha256_digest, stream_to_blob

SCRATCH = "scratch"
DOCKER_ARCHIVE = "docker-archive:"
OCI_LAYOUT = "oci-layout:"
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"

DockerSave = Callable[[str], Iterator[bytes]]  # image name -> `docker save` stream
RegistryPull = Callable[[str, Platform, Path], "BaseImage"]  # ref, platform, cache -> image


class BaseImageError(ConfigError):
    """A base image cannot be found or used; the message names it and where kdist looked."""


@dataclass(frozen=True)
class BaseImage:
    """A base image for one platform: its config and its unpacked layers, in order."""

    value: str  # what the user gave (or the default)
    origin: str  # where it was found, for messages and provenance
    config: dict[str, Any] = field(hash=False)
    layers: tuple[Blob, ...] = ()

    @property
    def digest(self) -> str:
        """The base's image id (digest of its canonical config): what the image is built on."""
        return sha256_digest(canonical_json(self.config))


def scratch(platform: Platform) -> BaseImage:
    """The empty base: no layers, the default PATH a Dockerfile build gives `FROM scratch`."""
    config: dict[str, Any] = {
        "architecture": platform.arch,
        "os": platform.os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    if platform.os == "linux":
        config["config"]["Env"] = [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ]
    if platform.arch == "arm64":
        config["variant"] = "v8"
    return BaseImage(SCRATCH, "scratch (empty)", config)


def resolve(
    value: str,
    platform: Platform,
    cache: Path,
    *,
    docker_save: DockerSave | None = None,
    registry_pull: RegistryPull | None = None,
) -> BaseImage:
    """Find `value` for `platform`, unpacking its layers into `cache`; BaseImageError if not."""
    if value == SCRATCH:
        return scratch(platform)
    if value.startswith(DOCKER_ARCHIVE):
        path, ref = _path_and_ref(value[len(DOCKER_ARCHIVE) :])
        return _from_docker_archive(value, Path(path), ref, platform, cache, f"archive {path}")
    if value.startswith(OCI_LAYOUT):
        path, ref = _path_and_ref(value[len(OCI_LAYOUT) :])
        return _from_oci_layout(value, Path(path), ref, platform, cache)
    return _from_reference(value, platform, cache, docker_save, registry_pull)


def _path_and_ref(rest: str) -> tuple[str, str | None]:
    path, _, ref = rest.partition(":")
    if not path:
        msg = f"no path in base image {rest!r}"
        raise BaseImageError(msg)
    return path, ref or None


def _from_reference(
    value: str,
    platform: Platform,
    cache: Path,
    docker_save: DockerSave | None,
    registry_pull: RegistryPull | None,
) -> BaseImage:
    looked: list[str] = []
    if docker_save is not None:
        try:
            with tempfile.TemporaryDirectory(dir=cache.parent, prefix=".save-") as tmp:
                saved = Path(tmp) / "image.tar"
                with saved.open("wb") as out:
                    for chunk in docker_save(value):
                        out.write(chunk)
                return _from_docker_archive(
                    value, saved, None, platform, cache, "the local Docker daemon"
                )
        except LookupError as exc:
            looked.append(f"not in the local Docker daemon ({exc})")
    else:
        looked.append("no local Docker daemon to look in")
    if registry_pull is not None:
        try:
            return registry_pull(value, platform, cache)
        except LookupError as exc:
            looked.append(str(exc))
    msg = (
        f"base image {value} for {platform} not found: {'; '.join(looked)}. "
        "Give a local image name, docker-archive:PATH, oci-layout:PATH or scratch instead"
    )
    raise BaseImageError(msg)


# ---------------------------------------------------------------------------------------------
# docker-archive


@dataclass(frozen=True)
class _Candidate:
    config: dict[str, Any]
    layers: tuple[str, ...]  # member names (docker-archive) or blob digests (oci-layout)
    names: tuple[str, ...]


def _from_docker_archive(
    value: str, path: Path, ref: str | None, platform: Platform, cache: Path, origin: str
) -> BaseImage:
    try:
        archive = tarfile.open(path)  # noqa: SIM115 - closed below; reading only, never extracting
    except (OSError, tarfile.TarError) as exc:
        msg = f"base image {value}: cannot read {path}: {exc}"
        raise BaseImageError(msg) from exc
    with archive:
        try:
            items = json.loads(_member(archive, "manifest.json").read())
            candidates = [
                _Candidate(
                    json.loads(_member(archive, item["Config"]).read()),
                    tuple(item["Layers"]),
                    tuple(item.get("RepoTags") or ()),
                )
                for item in items
            ]
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"base image {value}: {path} is not a docker save archive ({exc})"
            raise BaseImageError(msg) from exc
        chosen = _choose(value, candidates, ref, platform, origin)
        blobs = [
            unpack_layer(value, _member(archive, name), cache, diff_id)
            for name, diff_id in zip(chosen.layers, _diff_ids(value, chosen), strict=True)
        ]
    return BaseImage(value, origin, chosen.config, tuple(blobs))


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    try:
        handle = archive.extractfile(name)
    except KeyError:
        handle = None
    if handle is None:
        msg = f"no file {name} in the archive"
        raise KeyError(msg)
    return handle


def _diff_ids(value: str, candidate: _Candidate) -> list[str]:
    diff_ids = list(candidate.config.get("rootfs", {}).get("diff_ids") or [])
    if len(diff_ids) != len(candidate.layers):
        msg = f"base image {value}: its config lists {len(diff_ids)} layers, it has " + str(
            len(candidate.layers)
        )
        raise BaseImageError(msg)
    return diff_ids


def _choose(
    value: str, candidates: Sequence[_Candidate], ref: str | None, platform: Platform, origin: str
) -> _Candidate:
    if ref is not None:
        wanted = {ref, f"{ref}:latest"}
        candidates = [c for c in candidates if wanted & set(c.names)]
        if not candidates:
            msg = f"base image {value}: no image named {ref} in {origin}"
            raise BaseImageError(msg)
    fitting = [c for c in candidates if _platform_of(c.config) == platform]
    if not fitting:
        found = ", ".join(sorted({str(_platform_of(c.config)) for c in candidates})) or "none"
        msg = (
            f"base image {value} has no {platform} variant in {origin} (it has: {found}); "
            "kdist never emulates another architecture: give a base with that platform"
        )
        raise BaseImageError(msg)
    return fitting[0]


def _platform_of(config: dict[str, Any]) -> Platform | str:
    try:
        return Platform(str(config["os"]), str(config["architecture"]))
    except KeyError:
        return "unknown"


def unpack_layer(value: str, handle: IO[bytes], cache: Path, diff_id: str) -> Blob:
    """Store one layer uncompressed under cache/<hex>, checking it is the promised diff id."""
    hexdigest = diff_id.split(":", 1)[-1]
    cached = cache / hexdigest
    if cached.is_file():  # named by content and checked when it was stored
        return Blob(cached, diff_id, cached.stat().st_size)
    blob = stream_to_blob(_plain(value, handle), cache)
    if blob.digest != diff_id:
        blob.path.unlink(missing_ok=True)
        msg = f"base image {value}: a layer unpacks to {blob.digest}, its config says {diff_id}"
        raise BaseImageError(msg)
    return blob


def _plain(value: str, handle: IO[bytes]) -> Iterator[bytes]:
    head = handle.read(4)
    if head.startswith(_ZSTD):
        msg = f"base image {value}: zstd-compressed layers are not supported (only tar and gzip)"
        raise BaseImageError(msg)
    chunks = itertools.chain((head,), copy_chunks(handle))
    return _gunzip(chunks) if head.startswith(_GZIP) else chunks


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Undo gzip on a stream of chunks, member after member."""
    inflate = zlib.decompressobj(31)
    for chunk in chunks:
        while chunk:
            yield inflate.decompress(chunk)
            chunk = inflate.unused_data
            if chunk:  # the next gzip member starts here
                inflate = zlib.decompressobj(31)
    yield inflate.flush()


# ---------------------------------------------------------------------------------------------
# oci-layout

_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


def _from_oci_layout(
    value: str, root: Path, ref: str | None, platform: Platform, cache: Path
) -> BaseImage:
    origin = f"OCI layout {root}"
    try:
        index = json.loads((root / "index.json").read_bytes())
        if ref is not None:
            index["manifests"] = [
                d for d in index.get("manifests", []) if _ref_names(d) & {ref, ref.split(":")[-1]}
            ]
            if not index["manifests"]:
                msg = f"base image {value}: no image named {ref} in {origin}"
                raise BaseImageError(msg)
        candidates = list(_oci_candidates(root, index))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        msg = f"base image {value}: {root} is not a readable OCI image layout ({exc})"
        raise BaseImageError(msg) from exc
    chosen = _choose(value, candidates, None, platform, origin)
    blobs = []
    for digest, diff_id in zip(chosen.layers, _diff_ids(value, chosen), strict=True):
        with _blob_path(root, digest).open("rb") as handle:
            blobs.append(unpack_layer(value, handle, cache, diff_id))
    return BaseImage(value, origin, chosen.config, tuple(blobs))


def _ref_names(descriptor: dict[str, Any]) -> set[str]:
    notes = descriptor.get("annotations") or {}
    return {v for k, v in notes.items() if k.endswith(("image.ref.name", "image.name"))}


def _oci_candidates(root: Path, index: dict[str, Any]) -> Iterator[_Candidate]:
    for descriptor in index.get("manifests", []):
        raw = _verified(root, descriptor["digest"])
        if descriptor.get("mediaType") in _INDEX_TYPES:
            yield from _oci_candidates(root, json.loads(raw))
            continue
        manifest = json.loads(raw)
        config = json.loads(_verified(root, manifest["config"]["digest"]))
        layers = tuple(layer["digest"] for layer in manifest.get("layers", []))
        yield _Candidate(config, layers, tuple(_ref_names(descriptor)))


def _blob_path(root: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or not hexdigest.isalnum():
        msg = f"unsupported digest {digest!r}"
        raise ValueError(msg)
    return root / "blobs" / algorithm / hexdigest


def _verified(root: Path, digest: str) -> bytes:
    data = _blob_path(root, digest).read_bytes()
    if sha256_digest(data) != digest:
        msg = f"blob {digest} does not match its digest"
        raise ValueError(msg)
    return data
