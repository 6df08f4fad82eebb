"""Container image archives written directly: layers, config, manifest, index, byte for byte.

The archive is what `docker save` (Docker 25 and later) and `docker buildx build --output
type=docker` write, so `docker load`, `ctr import`, skopeo (`docker-archive:`) and crane all
read it: an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/*``) plus
Docker's ``manifest.json`` and ``repositories``. Layers are stored uncompressed (as
`docker save` does), so a layer's digest is its diff id; the server tarball compresses them.

Nothing here depends on the machine, the day or the user: JSON is canonical (sorted keys,
no spaces), every tar entry has the SOURCE_DATE_EPOCH mtime, uid/gid 0 and a fixed mode, and
entries are sorted (see :mod:`kdist.tarball`). The same base image and binaries give the same
bytes anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from kdist.packaging.archive import ArchiveEntry, EntryKind, iter_tar, write_tar

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
ANNOTATION_NAME = "io.containerd.image.name"  # what containerd and Docker read back as the name
ANNOTATION_REF = "org.opencontainers.image.ref.name"

# linux/capability.h: VFS_CAP_REVISION_2 and the effective flag of struct vfs_cap_data.
VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_FLAGS_EFFECTIVE = 0x000001
CAP_NET_BIND_SERVICE = 10
XATTR_CAPABILITY = "SCHILY.xattr.security.capability"  # how tar carries security.capability

_CHUNK = 1 << 20


def canonical_json(value: Any) -> bytes:  # noqa: ANN401
    """JSON with sorted keys and no spaces: one byte string per value, whoever writes it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rfc3339(epoch: int) -> str:
    """SOURCE_DATE_EPOCH as the UTC timestamp image configs carry."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def vfs_cap_data(capabilities: Iterable[int], *, effective: bool = True) -> bytes:
    """The `security.capability` value `setcap <caps>=+p[e]` writes (struct vfs_cap_data, v2).

    Little-endian u32 words: magic_etc (revision 2, plus the effective flag), then permitted
    and inheritable for capabilities 0-31, then for 32-63. Inheritable stays empty.
    """
    permitted = [0, 0]
    for cap in capabilities:
        if not 0 <= cap < 64:
            msg = f"capability {cap} out of range"
            raise ValueError(msg)
        permitted[cap // 32] |= 1 << (cap % 32)
    magic = VFS_CAP_REVISION_2 | (VFS_CAP_FLAGS_EFFECTIVE if effective else 0)
    return struct.pack("<5I", magic, permitted[0], 0, permitted[1], 0)


# ---------------------------------------------------------------------------------------------
# Windows layers: files live under Files/, with Windows attributes and security descriptors in
# pax records, which is how Windows layer tars carry them (hcsshim's backuptar reads them).

WIN_FILEATTR = "MSWINDOWS.fileattr"
WIN_RAWSD = "MSWINDOWS.rawsd"
WIN_CREATION = "LIBARCHIVE.creationtime"
_FILE_ALL_ACCESS = 0x001F01FF
_READ_EXECUTE = 0x001200A9
_GENERIC_ALL = 0x10000000
_OI, _CI, _IO = 0x01, 0x02, 0x08  # object inherit, container inherit, inherit only
_SID_BA = (5, (32, 544))  # BUILTIN\Administrators
_SID_BU = (5, (32, 545))  # BUILTIN\Users
_SID_SY = (5, (18,))  # LOCAL SYSTEM
_SID_CO = (3, (0,))  # CREATOR OWNER
Sid = tuple[int, tuple[int, ...]]

# The ACLs BuildKit gives files it adds to a Windows layer (SDDL in the comments).
# O:BAG:SYD:(A;;FA;;;BA)(A;;FA;;;SY)(A;;0x1200a9;;;BU)
FILE_ACES: tuple[tuple[int, int, Sid], ...] = (
    (0, _FILE_ALL_ACCESS, _SID_BA),
    (0, _FILE_ALL_ACCESS, _SID_SY),
    (0, _READ_EXECUTE, _SID_BU),
)
# O:BAG:SYD:(A;OICI;FA;;;BA)(A;OICI;FA;;;SY)(A;;FA;;;BA)(A;OICIIO;GA;;;CO)
#           (A;OICI;0x1200a9;;;BU)(A;CI;LC;;;BU)(A;CI;DC;;;BU)
DIR_ACES: tuple[tuple[int, int, Sid], ...] = (
    (_OI | _CI, _FILE_ALL_ACCESS, _SID_BA),
    (_OI | _CI, _FILE_ALL_ACCESS, _SID_SY),
    (0, _FILE_ALL_ACCESS, _SID_BA),
    (_OI | _CI | _IO, _GENERIC_ALL, _SID_CO),
    (_OI | _CI, _READ_EXECUTE, _SID_BU),
    (_CI, 0x4, _SID_BU),  # list children
    (_CI, 0x2, _SID_BU),  # delete child
)


def _sid(sid: Sid) -> bytes:
    authority, subs = sid
    return (
        struct.pack("<BB", 1, len(subs))
        + authority.to_bytes(6, "big")
        + b"".join(struct.pack("<I", s) for s in subs)
    )


def security_descriptor(aces: Sequence[tuple[int, int, Sid]]) -> bytes:
    """A self-relative security descriptor: owner Administrators, group SYSTEM, this DACL."""
    body = b""
    for flags, mask, sid in aces:
        raw = _sid(sid)
        body += struct.pack("<BBHI", 0, flags, 8 + len(raw), mask) + raw  # ACCESS_ALLOWED_ACE
    dacl = struct.pack("<BBHHH", 2, 0, 8 + len(body), len(aces), 0) + body
    owner, group = _sid(_SID_BA), _sid(_SID_SY)
    # revision 1, control SE_SELF_RELATIVE | SE_DACL_PRESENT, offsets owner/group/sacl/dacl
    head = 20
    offsets = (head, head + len(owner), 0, head + len(owner) + len(group))
    return struct.pack("<BBH4I", 1, 0, 0x8004, *offsets) + owner + group + dacl


def windows_pax(kind: EntryKind, mtime: int, *, descriptor: bool = True) -> dict[str, bytes]:
    """The pax records of one Windows layer entry: attributes, creation time, ACL."""
    directory = kind is EntryKind.DIR
    records = {
        WIN_FILEATTR: b"16" if directory else b"32",  # FILE_ATTRIBUTE_DIRECTORY / _ARCHIVE
        WIN_CREATION: f"{mtime}.0".encode(),
    }
    if descriptor:
        sd = security_descriptor(DIR_ACES if directory else FILE_ACES)
        records[WIN_RAWSD] = base64.b64encode(sd)
    return records


# ---------------------------------------------------------------------------------------------
# Layers and archives


@dataclass(frozen=True)
class Blob:
    """One stored blob: where its bytes are, its digest and size."""

    path: Path
    digest: str
    size: int


def hash_file(path: Path) -> Blob:
    """Digest and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return Blob(path, "sha256:" + digest.hexdigest(), size)


def write_layer(dest: Path, entries: Iterable[ArchiveEntry], mtime: int) -> Blob:
    """Write an uncompressed layer tar of `entries`; its digest is the layer's diff id."""
    write_tar(dest, entries, mtime=mtime)
    return hash_file(dest)


def stream_to_blob(chunks: Iterable[bytes], directory: Path) -> Blob:
    """Store a byte stream under `directory/<hex>` by its sha256 (the cache of base layers)."""
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".in-", delete=False) as tmp:
        try:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                tmp.write(chunk)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    final = directory / digest.hexdigest()
    Path(tmp.name).chmod(0o644)
    Path(tmp.name).replace(final)
    return Blob(final, "sha256:" + digest.hexdigest(), size)


def copy_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    """Read an open binary file to its end in chunks."""
    while chunk := handle.read(_CHUNK):
        yield chunk


@dataclass(frozen=True)
class Written:
    """What an image archive holds: the image id (config digest) and the manifest digest."""

    image_id: str
    manifest_digest: str
    tags: tuple[str, ...]


def _familiar(repo: str) -> str:
    # How Docker names a repository in `repositories` (docker.io/library/x is just x).
    for prefix in ("docker.io/library/", "docker.io/"):
        if repo.startswith(prefix):
            return repo[len(prefix) :]
    return repo


def split_tag(ref: str) -> tuple[str, str]:
    """`registry/name:tag` -> (`registry/name`, `tag`); the tag is required."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon <= slash:
        msg = f"image reference {ref!r} has no tag"
        raise ValueError(msg)
    return ref[:colon], ref[colon + 1 :]


def write_archive(
    dest: Path,
    config: Mapping[str, Any],
    layers: Sequence[Blob],
    tags: Sequence[str],
    mtime: int,
) -> Written:
    """Write the image archive of `config` and `layers` (uncompressed, in order) to `dest`.

    `config["rootfs"]["diff_ids"]` must list exactly the layers' digests. `tags` are full
    references (`registry.k8s.io/kube-proxy-amd64:v1.2.3`), the first one is the main name.
    """
    diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
    if diff_ids != [layer.digest for layer in layers]:
        msg = "image config rootfs.diff_ids do not match the layers"
        raise ValueError(msg)
    raw_config = canonical_json(config)
    config_digest = sha256_digest(raw_config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(raw_config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size} for layer in layers
        ],
    }
    raw_manifest = canonical_json(manifest)
    manifest_digest = sha256_digest(raw_manifest)
    platform = {"architecture": config["architecture"], "os": config["os"]}
    if config.get("variant"):
        platform["variant"] = config["variant"]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(raw_manifest),
                "platform": platform,
                "annotations": {ANNOTATION_NAME: tag, ANNOTATION_REF: split_tag(tag)[1]},
            }
            for tag in tags
        ],
    }
    docker_manifest = [
        {
            "Config": _blob_name(config_digest),
            "RepoTags": list(tags),
            "Layers": [_blob_name(layer.digest) for layer in layers],
        }
    ]
    repositories: dict[str, dict[str, str]] = {}
    if layers:  # Docker names each tag's top layer; an image without layers has none
        for tag in tags:
            repo, name = split_tag(tag)
            repositories.setdefault(_familiar(repo), {})[name] = layers[-1].digest.split(":")[1]
    entries = [
        ArchiveEntry.data(_blob_name(config_digest), raw_config),
        ArchiveEntry.data(_blob_name(manifest_digest), raw_manifest),
        ArchiveEntry.data("index.json", canonical_json(index)),
        ArchiveEntry.data("manifest.json", canonical_json(docker_manifest)),
        ArchiveEntry.data("oci-layout", OCI_LAYOUT),
    ]
    if repositories:
        entries.append(ArchiveEntry.data("repositories", canonical_json(repositories)))
    seen = {config_digest, manifest_digest}
    for layer in layers:
        if layer.digest not in seen:  # two identical layers are stored once, as Docker does
            seen.add(layer.digest)
            entries.append(ArchiveEntry.file(_blob_name(layer.digest), layer.path, 0o644))
    write_tar(dest, entries, mtime=mtime)
    return Written(config_digest, manifest_digest, tuple(tags))


def _blob_name(digest: str) -> str:
    algorithm, hexdigest = digest.split(":", 1)
    return f"blobs/{algorithm}/{hexdigest}"


def layer_bytes(entries: Iterable[ArchiveEntry], mtime: int) -> bytes:
    """The layer tar of `entries` in memory (for tests and small layers)."""
    return b"".join(iter_tar(entries, mtime))
