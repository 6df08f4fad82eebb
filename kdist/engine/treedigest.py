"""The source tree's content digest, with a stat cache so an unchanged tree is not re-read.

The digest covers everything sync sends: each path, its x bit and its bytes, and each
symlink's target. Reading every byte of a Kubernetes checkout (30,000 files) takes seconds, so
the digest of each regular file is kept in a cache file under the output folder, keyed by the
file's path and its lstat (size, mtime_ns, ctime_ns, inode, device, mode), as git's index does:
a file is read again only when one of those changed. `touch -d` can put an mtime back, but not
a ctime, and a replaced file has a new inode, so a changed file always shows.

Racy files (git's "racy git"): a file changed twice within one tick of the filesystem's clock
can keep the same stat. So an entry is kept only when the file's mtime and ctime are older than
the start of the scan by more than RACY_MARGIN_NS (coarse kernel clocks, filesystems with 1-2 s
timestamps, a file server's clock a little off); a younger file is read again on every scan
until it has settled.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import struct
import time
from collections.abc import Callable
from pathlib import Path

TREE_CACHE = ".kdist/treecache"  # under the output folder, next to the journal
RACY_MARGIN_NS = 3_000_000_000
_SKIP_TOP = frozenset({b"_output", b".git"})  # what sync never sends, so it cannot change a build
_MAGIC = b"kdist-treecache-2\n"
_KEY = struct.Struct("<qqqQQI")  # size, mtime_ns, ctime_ns, inode, device, mode
_CHUNK = 1 << 20

Cache = dict[bytes, bytes]  # path relative to the tree -> its lstat key, then its sha256


def tree_digest(
    source: Path, cache_file: Path | None = None, clock: Callable[[], int] = time.time_ns
) -> str:
    """Content digest of everything sync sends: paths, x bits, bytes, symlink targets.

    With `cache_file`, regular files whose lstat did not change since the last scan are not
    read again (see the module docstring); the file is rewritten when the tree changed.
    """
    root = os.fsencode(source)
    settled_before = clock() - RACY_MARGIN_NS
    old = _load(cache_file, root) if cache_file is not None else {}
    new: Cache = {}
    lines = []
    for rel, info in _entries(root):
        if stat.S_ISLNK(info.st_mode):
            body = b"L" + os.readlink(root + b"/" + rel)  # noqa: PTH115 - bytes paths
        else:
            key = _KEY.pack(
                info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev,
                info.st_mode,
            )  # fmt: skip
            record = old.get(rel)
            if record is not None and record.startswith(key):
                digest = record[_KEY.size :]
            else:
                digest = _sha256(root + b"/" + rel)
                record = key + digest
            if info.st_mtime_ns < settled_before and info.st_ctime_ns < settled_before:
                new[rel] = record
            body = (b"X" if info.st_mode & 0o111 else b"F") + digest
        lines.append(rel + b"\0" + body + b"\n")
    if cache_file is not None and new != old:
        _save(cache_file, root, new)
    return hashlib.sha256(b"".join(lines)).hexdigest()


def _entries(root: bytes) -> list[tuple[bytes, os.stat_result]]:
    """(path relative to root, lstat) of each regular file and symlink, in os.walk's order.

    At each level the directory's own files and symlinks come first, by name, then each
    subdirectory in name order; symlinks to directories are not followed. Unreadable
    directories are passed over, as os.walk does (rsync then reports them).
    """
    found: list[tuple[bytes, os.stat_result]] = []
    pending = [b""]  # relative folders still to list, the next one last
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(root + b"/" + rel if rel else root) as listing:
                items = sorted((e.name, e.stat(follow_symlinks=False)) for e in listing)
        except OSError:
            continue
        subdirs = []
        for name, info in items:
            mode = info.st_mode
            if stat.S_ISDIR(mode):
                if rel or name not in _SKIP_TOP:
                    subdirs.append(rel + name + b"/")
            elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                found.append((rel + name, info))
        pending += reversed(subdirs)
    return found


def _sha256(path: bytes) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:  # noqa: PTH123 - bytes paths, for names of any encoding
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.digest()


def _load(path: Path, root: bytes) -> Cache:
    """The cache for the tree at `root`; empty when missing, damaged or another tree's."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    header = _MAGIC + root + b"\n"
    if not data.startswith(header):
        return {}
    # The file is: header, the paths joined by NUL, NUL NUL, then one fixed-size record each.
    names, sep, blob = data[len(header) :].partition(b"\0\0\0")
    paths = names.split(b"\0") if names else []
    size = _KEY.size + 32
    if not sep or len(blob) != size * len(paths):
        return {}
    return dict(zip(paths, (blob[i : i + size] for i in range(0, len(blob), size)), strict=True))


def _save(path: Path, root: bytes, cache: Cache) -> None:
    """Write the cache atomically; a cache that cannot be written only costs the next run."""
    data = b"".join((_MAGIC, root, b"\n", b"\0".join(cache), b"\0\0\0", *cache.values()))
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with contextlib.suppress(OSError):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
