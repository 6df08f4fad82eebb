"""The release tarballs of both layouts: which ones, what goes in each, and their checksums.

Kubernetes layout: `kube::release::package_tarballs` of k/k `build/lib/release.sh`
(reference §6), with the staging directories replaced by in-memory entry lists and
`tar czf` by :mod:`kdist.packaging.archive`, so every tarball is byte-reproducible. Differences
from upstream, all deliberate:

* Server images (`<bin>.tar`, `<bin>.docker_tag`) are written by
  :mod:`kdist.packaging.images` (no `docker buildx`) before the server tarball that holds
  them; with images off (`--no-images`) the server tarballs hold the binaries only.
* Entry order, mtimes, owners and modes are normalised (see :mod:`kdist.packaging.archive`);
  binaries are always stored 0755.
* Every directory is stored explicitly, parents first (upstream's dirty src tarball has no
  `kubernetes/` entry of its own, and the addons merge leaves directory entries out).
* A symlink where a required file or a binary should be is refused instead of followed.
* Only tarballs for platforms of the narrowed class lists are made
  (:func:`kdist.config.kubernetes.classes_for`), the same list :func:`expected_tarballs` gives.

Generic layout: one `<name>-<os>-<arch>.tar.gz` per platform holding every regular file of
`bin_dir/<os>/<arch>/` (not recursive; symlinks, directories and special files are skipped
with a warning on the `kdist.packaging.tarballs` logger) under the top directory `<name>/`,
with the file's own x bit.

Thread safety: :func:`platform_tarballs` keeps no shared state and different platforms
write different files, so the pipeline may call it from several threads at once.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kdist.config import kubernetes as k8s
from kdist.errors import PackageError
from kdist.model import Layout, Platform, VersionInfo
from kdist.packaging.archive import (
    ArchiveEntry,
    Compressor,
    EntryKind,
    tree_entries,
    write_gzip,
    write_tarball,
)
from kdist.packaging.images import ImagePlan

log = logging.getLogger(__name__)

TOP = "kubernetes"
SRC_TARBALL = "kubernetes-src.tar.gz"
MANIFESTS_TARBALL = "kubernetes-manifests.tar.gz"
PORTABLE_TARBALL = "kubernetes-test-portable.tar.gz"
FULL_TARBALL = "kubernetes.tar.gz"

CLIENT_README = (
    "Client binaries are no longer included in the Kubernetes final tarball.\n"
    "\n"
    "Run cluster/get-kube-binaries.sh to download client and server binaries.\n"
)
SERVER_README = (
    "Server binary tarballs are no longer included in the Kubernetes final tarball.\n"
    "\n"
    "Run cluster/get-kube-binaries.sh to download client and server binaries.\n"
)

# kube::release::package_kube_manifests_tarball: from cluster/gce/manifests, in its order.
GCE_MANIFESTS = (
    "kube-proxy.manifest",
    "cluster-autoscaler.manifest",
    "etcd.manifest",
    "kube-scheduler.manifest",
    "kube-apiserver.manifest",
    "konnectivity-server.yaml",
    "abac-authz-policy.jsonl",
    "cloud-controller-manager.manifest",
    "kube-controller-manager.manifest",
    "kube-addon-manager.yaml",
    "glbc.manifest",
)
# (source under cluster/gce/gci, name in gci-trusty/, required)
GCI_SCRIPTS = (
    ("configure-helper.sh", "gci-configure-helper.sh", True),
    ("configure-kubeapiserver.sh", "configure-kubeapiserver.sh", True),
    ("gke-internal-configure-helper.sh", "gke-internal-configure-helper.sh", False),
    ("health-monitor.sh", "health-monitor.sh", True),
)
ADDON_DIRS = ("cluster/addons", "cluster/gce/addons")  # merged in this order, later wins
ADDON_PATTERNS = ("*.yaml", "*.yaml.in", "*.json")
ADDON_EXCLUDE = "*demo*"

CRUFT_PATTERNS = ("*~", "#*#", ".DS*")  # kube::release::clean_cruft
SRC_EXCLUDE = ("_*", ".git*", ".config*", ".gsutil*")  # kube::release::package_src_tarball

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackageSpec:
    """Everything packaging needs to know about one release."""

    layout: Layout
    name: str  # generic: tarball prefix and top directory (kubernetes: always "kubernetes")
    source: Path  # the source tree (LICENSES/, cluster/, test/, hack/, docs/, README.md ...)
    bin_dir: Path  # binaries are at bin_dir/<os>/<arch>/<file>
    platforms: tuple[Platform, ...]  # the platforms of this release (KUBE_BUILD_PLATFORMS)
    version: VersionInfo  # .version goes in kubernetes/version; .source_date_epoch is the mtime
    images: ImagePlan | None = None  # server images, read from images_dir/<arch>/<bin>.tar
    images_dir: Path | None = None
    jobs: int = 0  # compression threads per tarball; 0 = os.cpu_count()
    compressor: Compressor = (
        "zlib"  # see kdist.packaging.archive; "zlib" is the same bytes everywhere
    )

    def __post_init__(self) -> None:
        if self.layout is Layout.GENERIC and not _NAME_RE.match(self.name):
            msg = (
                f"package name {self.name!r} is not usable as a tarball prefix "
                "(letters, digits, '.', '_', '+', '-'; not starting with a symbol)"
            )
            raise PackageError(msg)


# ---------------------------------------------------------------------------------------------
# Public API


def expected_tarballs(spec: PackageSpec) -> tuple[str, ...]:
    """Return every file name the release must have in release-tars, sorted (no checksums)."""
    if spec.layout is Layout.KUBERNETES:
        return k8s.tarball_names(k8s.classes_for(spec.platforms))
    return tuple(sorted({_generic_name(spec, p) for p in spec.platforms}))


def common_tarballs(spec: PackageSpec, dest: Path) -> list[Path]:
    """Write the platform-independent tarballs into `dest`; return their paths.

    Kubernetes: src, manifests, test-portable and kubernetes.tar.gz (in that order; the src
    tarball must exist before any node or server tarball). Generic: none.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if spec.layout is not Layout.KUBERNETES:
        return []
    if not spec.version.version:
        msg = "no version: kubernetes/version in kubernetes.tar.gz needs one"
        raise PackageError(msg)
    return [
        _src_tarball(spec, dest),
        _manifests_tarball(spec, dest),
        _portable_tarball(spec, dest),
        _full_tarball(spec, dest),
    ]


def platform_tarballs(spec: PackageSpec, platform: Platform, dest: Path) -> list[Path]:
    """Write the tarballs of one platform into `dest`; return their paths.

    Kubernetes: client, node, server and test tarballs as the platform's classes say. Node
    and server tarballs embed `dest/kubernetes-src.tar.gz`, so :func:`common_tarballs` must
    have run. Generic: `<name>-<os>-<arch>.tar.gz`. Raises PackageError naming the platform
    and the file when a binary is missing.
    """
    if platform not in spec.platforms:
        msg = f"{platform} is not a platform of this release ({_platform_list(spec)})"
        raise PackageError(msg)
    dest.mkdir(parents=True, exist_ok=True)
    if spec.layout is Layout.KUBERNETES:
        return _kubernetes_platform(spec, platform, dest)
    return [_generic_platform(spec, platform, dest)]


CHECKSUMMED = (".tar.gz", ".spdx.json")


def write_checksums(dest: Path) -> None:
    """Write SHA256SUMS, SHA512SUMS and a `.sha256`/`.sha512` per tarball, SBOM and SUMS file.

    Like k/release `WriteChecksums`: SUMS lines are `<hex>  <name>`, sorted by name, joined
    by newlines with no trailing newline; each `<file>.shaNNN` holds the bare hex digest.
    The SBOMs (`*.spdx.json`) are listed as upstream lists its SPDX files; the provenance is
    not (it names hosts and times, so it differs per run) and carries its own signature.
    """
    names = sorted(
        entry.name
        for entry in os.scandir(dest)
        if entry.name.endswith(CHECKSUMMED) and entry.is_file(follow_symlinks=False)
    )
    if not any(n.endswith(".tar.gz") for n in names):
        msg = f"no *.tar.gz in {dest} to checksum"
        raise PackageError(msg)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        digests = dict(zip(names, pool.map(lambda n: _file_digests(dest / n), names), strict=True))
    sums = {
        "SHA256SUMS": "\n".join(f"{digests[n][0]}  {n}" for n in names).encode(),
        "SHA512SUMS": "\n".join(f"{digests[n][1]}  {n}" for n in names).encode(),
    }
    for sums_name, content in sums.items():
        _write_file(dest / sums_name, content)
        digests[sums_name] = (
            hashlib.sha256(content).hexdigest(),
            hashlib.sha512(content).hexdigest(),
        )
    for name, (sha256, sha512) in digests.items():
        _write_file(dest / f"{name}.sha256", sha256.encode())
        _write_file(dest / f"{name}.sha512", sha512.encode())


def scan_binaries(directory: Path) -> tuple[list[Path], list[str]]:
    """Split a generic binaries directory into its regular files and notes on what was skipped."""
    files: list[Path] = []
    skipped: list[str] = []
    with os.scandir(directory) as it:
        for entry in sorted(it, key=lambda e: e.name):
            if entry.is_symlink():
                skipped.append(f"{entry.path}: symlink, not followed")
            elif entry.is_file(follow_symlinks=False):
                files.append(Path(entry.path))
            elif entry.is_dir(follow_symlinks=False):
                skipped.append(f"{entry.path}: directory")
            else:
                skipped.append(f"{entry.path}: not a regular file")
    return files, skipped


# ---------------------------------------------------------------------------------------------
# Common tarballs (kubernetes)


def _src_tarball(spec: PackageSpec, dest: Path) -> Path:
    out = dest / SRC_TARBALL
    if spec.version.tree_state == "clean":
        return write_gzip(
            out, _git_archive(spec.source), jobs=spec.jobs, compressor=spec.compressor
        )
    entries: list[ArchiveEntry] = []
    with os.scandir(spec.source) as it:
        tops = sorted(e.name for e in it)
    for top in tops:
        if any(fnmatch.fnmatchcase(top, pattern) for pattern in SRC_EXCLUDE):
            continue
        path = spec.source / top
        if _same_file(path, dest):
            continue
        entries += tree_entries(path, f"{TOP}/{top}", exclude=[dest])
    return _write(spec, out, entries)


def _git_archive(source: Path) -> Iterator[bytes]:
    """Stream `git archive --format=tar HEAD` of `source`; raise PackageError if git fails."""
    argv = [
        "git",
        "-C",
        str(source),
        "-c",
        "core.autocrlf=false",  # pin what user config could otherwise change
        "-c",
        "tar.umask=0002",
        "archive",
        "--format=tar",
        "HEAD",
    ]
    with (
        tempfile.TemporaryFile() as err,
        subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
        ) as proc,
    ):
        assert proc.stdout is not None
        try:
            while chunk := proc.stdout.read(_CHUNK):
                yield chunk
        finally:
            if proc.poll() is None:
                proc.stdout.close()
        if proc.wait() != 0:
            err.seek(0)
            text = err.read().decode(errors="replace").strip()
            msg = f"git archive HEAD in {source} failed (exit {proc.returncode}): {text}"
            raise PackageError(msg)


def _manifests_tarball(spec: PackageSpec, dest: Path) -> Path:
    tarball = MANIFESTS_TARBALL
    gci = f"{TOP}/gci-trusty"
    manifests = spec.source / "cluster/gce/manifests"
    files: dict[str, ArchiveEntry] = {}
    for name in GCE_MANIFESTS:
        files[f"{gci}/{name}"] = ArchiveEntry.file(
            f"{gci}/{name}", _required_file(spec, manifests / name, tarball)
        )
    internal = [
        entry.source
        for entry in _tree(spec, "cluster/gce/manifests", gci, tarball)
        if entry.kind is EntryKind.FILE and isinstance(entry.source, Path)
        if fnmatch.fnmatchcase(entry.source.name, "internal-*")
    ]
    for path in sorted(internal, key=str):
        files[f"{gci}/{path.name}"] = ArchiveEntry.file(f"{gci}/{path.name}", path)
    gce_gci = spec.source / "cluster/gce/gci"
    for src_name, name, required in GCI_SCRIPTS:
        path = gce_gci / src_name
        if required or os.path.lexists(path):
            files[f"{gci}/{name}"] = ArchiveEntry.file(
                f"{gci}/{name}", _required_file(spec, path, tarball)
            )
    for addons in ADDON_DIRS:
        for entry in _tree(spec, addons, gci, tarball):
            base = entry.name.rsplit("/", 1)[-1]
            if (
                entry.kind is EntryKind.FILE
                and any(fnmatch.fnmatchcase(base, pattern) for pattern in ADDON_PATTERNS)
                and not fnmatch.fnmatchcase(base, ADDON_EXCLUDE)
            ):
                files[entry.name] = entry
    files = {name: entry for name, entry in files.items() if not _is_cruft(name)}
    return _write(spec, dest / tarball, files.values())


def _portable_tarball(spec: PackageSpec, dest: Path) -> Path:
    tarball = PORTABLE_TARBALL
    entries = _tree(spec, "test/images", f"{TOP}/test/images", tarball)
    for rel in k8s.TEST_PORTABLE:
        entries += _tree(spec, rel, f"{TOP}/{rel}", tarball)
    return _write(spec, dest / tarball, _merge(entries))


def _full_tarball(spec: PackageSpec, dest: Path) -> Path:
    tarball = FULL_TARBALL
    manifests = dest / MANIFESTS_TARBALL
    if not manifests.is_file():
        msg = f"{manifests} is missing: kubernetes.tar.gz embeds it"
        raise PackageError(msg)
    entries = [ArchiveEntry.data(f"{TOP}/client/README", CLIENT_README.encode())]
    entries += _tree(spec, "cluster", f"{TOP}/cluster", tarball)
    entries.append(ArchiveEntry.file(f"{TOP}/server/{MANIFESTS_TARBALL}", manifests, 0o644))
    entries.append(ArchiveEntry.data(f"{TOP}/server/README", SERVER_README.encode()))
    entries += _tree(spec, "hack/lib", f"{TOP}/hack/lib", tarball)
    entries += _tree(spec, "docs", f"{TOP}/docs", tarball)
    readme = _required_file(spec, spec.source / "README.md", tarball)
    entries.append(ArchiveEntry.file(f"{TOP}/README.md", readme))
    entries += _tree(spec, "LICENSES", f"{TOP}/LICENSES", tarball)
    entries.append(ArchiveEntry.data(f"{TOP}/version", f"{spec.version.version}\n".encode()))
    return _write(spec, dest / tarball, _merge(entries))


# ---------------------------------------------------------------------------------------------
# Platform tarballs


def _kubernetes_plan(
    spec: PackageSpec, platform: Platform
) -> list[tuple[str, str, tuple[str, ...]]]:
    """List (tarball kind, bin dir inside it, binaries) for the platform's classes."""
    classes = k8s.classes_for(spec.platforms)
    client = k8s.binary_names(k8s.CLIENT_TARGETS, platform)
    plan: list[tuple[str, str, tuple[str, ...]]] = []
    if platform in classes.client:
        plan.append(("client", "client/bin", client))
    if platform in classes.node:
        plan.append(("node", "node/bin", (*k8s.binary_names(k8s.NODE_TARGETS, platform), *client)))
    if platform in classes.server:
        server = k8s.binary_names(k8s.SERVER_TARGETS, platform)
        plan.append(("server", "server/bin", (*server, *client)))
    if platform in classes.test:
        test = k8s.binary_names(k8s.TEST_TARGETS, platform)
        if platform in classes.server:  # KUBE_TEST_SERVER_PLATFORMS = the server platforms
            test += k8s.binary_names(k8s.TEST_SERVER_TARGETS, platform)
        plan.append(("test", "test/bin", test))
    return plan


def _kubernetes_platform(spec: PackageSpec, platform: Platform, dest: Path) -> list[Path]:
    plan = _kubernetes_plan(spec, platform)
    if not plan:  # in no Kubernetes platform list: nothing is built or packed for it
        return []
    bin_dir = _platform_dir(spec, platform)
    _check_binaries(platform, bin_dir, {b for _, _, names in plan for b in names})
    embeds_src = any(kind in ("node", "server") for kind, _, _ in plan)
    src = dest / SRC_TARBALL
    if embeds_src and not src.is_file():
        msg = (
            f"{src} is missing: the node and server tarballs of {platform} embed it, "
            "so common_tarballs() must run before platform_tarballs()"
        )
        raise PackageError(msg)
    licenses = (
        _tree(spec, "LICENSES", f"{TOP}/LICENSES", "node/server tarballs") if embeds_src else []
    )

    written = []
    for kind, inner, binaries in plan:
        entries = [
            ArchiveEntry.file(f"{TOP}/{inner}/{b}", bin_dir / b, 0o755)
            for b in dict.fromkeys(binaries)
        ]
        if kind in ("node", "server"):
            entries += licenses
            entries.append(ArchiveEntry.file(f"{TOP}/{SRC_TARBALL}", src, 0o644))
        if kind == "server":
            entries.append(ArchiveEntry.directory(f"{TOP}/addons"))
            entries += _image_entries(spec, platform, f"{TOP}/{inner}")
        written.append(_write(spec, dest / f"kubernetes-{kind}-{platform.dashed}.tar.gz", entries))
    return written


def _image_entries(spec: PackageSpec, platform: Platform, inner: str) -> list[ArchiveEntry]:
    """`<bin>.tar` and `<bin>.docker_tag` of each server image, already built in images_dir."""
    if spec.images is None or spec.images_dir is None:
        return []
    entries = []
    for image in spec.images.for_platform(platform):
        archive = spec.images_dir / platform.arch / image.archive
        if not archive.is_file():
            msg = f"{platform}: image {archive} is missing; build the images first"
            raise PackageError(msg)
        entries.append(ArchiveEntry.file(f"{inner}/{image.archive}", archive, 0o644))
        tag = f"{image.docker_tag}\n".encode()
        entries.append(ArchiveEntry.data(f"{inner}/{image.tag_file}", tag))
    return entries


def _generic_platform(spec: PackageSpec, platform: Platform, dest: Path) -> Path:
    bin_dir = _platform_dir(spec, platform)
    files, skipped = scan_binaries(bin_dir)
    for note in skipped:
        log.warning("%s: skipped %s", platform, note)
    if not files:
        msg = f"{platform}: no binaries (regular files) in {bin_dir}"
        raise PackageError(msg)
    entries = [ArchiveEntry.file(f"{spec.name}/{path.name}", path) for path in files]
    return _write(spec, dest / _generic_name(spec, platform), entries)


def _platform_dir(spec: PackageSpec, platform: Platform) -> Path:
    """Return bin_dir/<os>/<arch>, refusing symlinks so nothing outside the tree is read."""
    path = spec.bin_dir
    for part in (platform.os, platform.arch):
        path = path / part
        try:
            st = path.lstat()
        except FileNotFoundError:
            msg = f"{platform}: no binaries directory {path}"
            raise PackageError(msg) from None
        if stat.S_ISLNK(st.st_mode):
            msg = f"{platform}: {path} is a symlink; refusing to follow it out of {spec.bin_dir}"
            raise PackageError(msg)
        if not stat.S_ISDIR(st.st_mode):
            msg = f"{platform}: {path} is not a directory"
            raise PackageError(msg)
    return path


def _check_binaries(platform: Platform, bin_dir: Path, names: Iterable[str]) -> None:
    problems = []
    for name in sorted(names):
        try:
            st = (bin_dir / name).lstat()
        except FileNotFoundError:
            problems.append(f"{name} (missing)")
            continue
        if stat.S_ISLNK(st.st_mode):
            problems.append(f"{name} (a symlink, not followed)")
        elif not stat.S_ISREG(st.st_mode):
            problems.append(f"{name} (not a regular file)")
    if problems:
        msg = f"{platform}: binaries missing from {bin_dir}: {', '.join(problems)}"
        raise PackageError(msg)


# ---------------------------------------------------------------------------------------------
# Helpers


def _write(spec: PackageSpec, out: Path, entries: Iterable[ArchiveEntry]) -> Path:
    try:
        return write_tarball(
            out,
            entries,
            mtime=spec.version.source_date_epoch,
            jobs=spec.jobs,
            compressor=spec.compressor,
        )
    except ValueError as exc:
        msg = f"{out.name}: {exc}"
        raise PackageError(msg) from exc


def _tree(spec: PackageSpec, rel: str, name: str, tarball: str) -> list[ArchiveEntry]:
    path = spec.source / rel
    if not os.path.lexists(path):
        msg = f"{path} is missing from the source tree; {tarball} needs it"
        raise PackageError(msg)
    return tree_entries(path, name, skip=_is_cruft)


def _required_file(spec: PackageSpec, path: Path, tarball: str) -> Path:
    try:
        st = path.lstat()
    except FileNotFoundError:
        msg = f"{path} is missing from the source tree; {tarball} needs it"
        raise PackageError(msg) from None
    if not stat.S_ISREG(st.st_mode):
        msg = f"{path} is not a regular file; {tarball} needs it"
        raise PackageError(msg)
    return path


def _is_cruft(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(base, pattern) for pattern in CRUFT_PATTERNS)


def _merge(entries: Iterable[ArchiveEntry]) -> list[ArchiveEntry]:
    """Drop repeated names, keeping the last one (like copying over a staging directory)."""
    return list({entry.name: entry for entry in entries}.values())


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _generic_name(spec: PackageSpec, platform: Platform) -> str:
    return f"{spec.name}-{platform.dashed}.tar.gz"


def _platform_list(spec: PackageSpec) -> str:
    return ", ".join(str(p) for p in spec.platforms) or "none"


def _file_digests(path: Path) -> tuple[str, str]:
    sha256 = hashlib.sha256()
    sha512 = hashlib.sha512()
    with path.open("rb", buffering=0) as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            sha512.update(chunk)
    return sha256.hexdigest(), sha512.hexdigest()


def _write_file(path: Path, content: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(content)
        tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
