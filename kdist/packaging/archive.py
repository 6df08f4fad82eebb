"""Byte-reproducible tar.gz files, compressed on every core.

The bytes written are a function of the entries (names, contents, x bits, link targets),
the mtime, the compression level and the compressor only: not of the machine, the day,
the umask, TZ, the owner of the files, readdir order or the number of threads.

tar format, fixed:

* POSIX pax (POSIX.1-2001): plain ustar headers, plus a pax ``x`` extended header only for
  an entry with a field that does not fit ustar (a name or link target longer than 100
  bytes or not ASCII, a size of 8 GiB or more). pax rather than GNU because it is the
  standard one, the one `git archive` writes (so the clean-tree src tarball and ours agree)
  and the default of Python's tarfile and Go's archive/tar, and because GNU's
  ``././@LongLink`` is an extension. The headers are encoded here, not by ``tarfile``, so a
  Python upgrade cannot change a byte. The ``x`` header is named ``././@PaxHeader`` (as
  Python's tarfile names it; GNU tar would put its pid there).
* Every entry: mtime = the given SOURCE_DATE_EPOCH, uid/gid 0, uname/gname ``root``,
  devmajor/devminor 0, no atime/ctime records. Modes are normalised: 0755 for directories
  and for files with any x bit, 0644 for other files, 0777 for symlinks.
* Order: by path components, byte order (what GNU ``tar --sort=name`` gives in the C
  locale), so a directory comes before its contents and a subtree is contiguous. Every
  directory implied by a deeper entry is emitted explicitly. Duplicate names are an error.
* End: two zero blocks, padded to a whole 10240-byte record (GNU tar's default blocking).

gzip format, fixed:

* One gzip member. Header ``1f 8b 08``, FLG 0 (no file name, no comment), MTIME 0, XFL 2
  for level 9 / 4 for level 1 / else 0, OS 3 (Unix): exactly what ``gzip -n`` writes on
  Unix. Default level 6, gzip's default.
* compressor ``"zlib"`` (the default): the tar stream is cut into fixed blocks of
  ``BLOCK_SIZE`` (1 MiB) bytes of *input*. Each block is deflated on its own in a
  ThreadPoolExecutor (zlib releases the GIL), primed with the previous block's last 32 KiB
  as preset dictionary (so the ratio is that of one stream), and ended with a sync flush
  (byte aligned, not final); the last block, possibly empty, is ended with Z_FINISH. The
  pieces concatenated in order form one valid deflate stream; CRC-32 and ISIZE are
  computed serially (CRC runs at GB/s). This is pigz's technique. Block boundaries depend
  only on offsets in the tar stream, so the bytes do not depend on ``jobs``; they do
  depend on the zlib build (stock zlib 1.2.x/1.3.x agree; zlib-ng does not): see
  :func:`compressor_id`. A bounded window of ``2 * jobs + 2`` blocks is in flight, so
  memory stays at a few MiB whatever the tarball size.
* compressor ``"pigz"``: the stream is piped through ``pigz -n --processes N -<level>``.
  pigz's output is independent of N too, but it is not the same bytes as the zlib path
  (different block size and framing) and depends on the pigz version. ``"auto"`` picks pigz
  when it is on PATH. The default stays ``"zlib"`` so the bytes do not depend on whether
  a machine happens to have pigz installed.

Output goes to ``<dest>.tmp`` and is renamed over ``dest`` once complete, so a reader never
sees a partial tarball. Two concurrent writers of the same ``dest`` are refused.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import struct
import subprocess
import tempfile
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import BinaryIO, Literal

from kdist.errors import PackageError

BLOCK_SIZE = 1 << 20  # input bytes per independently compressed deflate block
DEFAULT_LEVEL = 6  # gzip's default
GZIP_OS_UNIX = 3  # the OS byte `gzip -n` writes on Unix
RECORD_SIZE = 10240  # GNU tar's default record (20 blocks of 512)
READ_CHUNK = 1 << 20

Compressor = Literal["zlib", "pigz", "auto"]

_TAR_BLOCK = 512
_WINDOW = 32 * 1024  # deflate's window: the preset dictionary of each block
_PAX_NAME = b"././@PaxHeader"
_ENCODING = ("utf-8", "surrogateescape")  # names that are not UTF-8 keep their bytes
_MAX_OCTAL_8 = 0o7777777
_MAX_OCTAL_12 = 0o77777777777


class EntryKind(str, Enum):
    """What an :class:`ArchiveEntry` stores."""

    FILE = "file"  # contents read from `source` (a Path) when the tarball is written
    DIR = "dir"
    BYTES = "bytes"  # contents given in memory as `source`
    SYMLINK = "symlink"  # `source` is the link target (str); never followed


@dataclass(frozen=True)
class ArchiveEntry:
    """One member of a tarball: archive name, kind, source, (optional) mode and pax records."""

    name: str
    kind: EntryKind
    source: Path | bytes | str | None = None
    mode: int | None = None  # only the x bits matter; None: from the file (FILE) or 0644
    pax: tuple[tuple[str, bytes], ...] = ()  # extra pax records, e.g. SCHILY.xattr.*

    @classmethod
    def file(
        cls, name: str, path: Path, mode: int | None = None, pax: Mapping[str, bytes] | None = None
    ) -> ArchiveEntry:
        """Make a regular file read from `path` (never through a symlink) at write time."""
        return cls(name, EntryKind.FILE, path, mode, _records(pax))

    @classmethod
    def directory(cls, name: str, pax: Mapping[str, bytes] | None = None) -> ArchiveEntry:
        """Make a directory (always 0755)."""
        return cls(name, EntryKind.DIR, pax=_records(pax))

    @classmethod
    def data(
        cls, name: str, content: bytes, mode: int = 0o644, pax: Mapping[str, bytes] | None = None
    ) -> ArchiveEntry:
        """Make a regular file holding `content`."""
        return cls(name, EntryKind.BYTES, bytes(content), mode, _records(pax))

    @classmethod
    def symlink(cls, name: str, target: str) -> ArchiveEntry:
        """Make a symbolic link to `target`, stored as is."""
        return cls(name, EntryKind.SYMLINK, target)


def _records(pax: Mapping[str, bytes] | None) -> tuple[tuple[str, bytes], ...]:
    # Sorted, so the header bytes do not depend on the order a caller built the mapping in.
    return tuple(sorted((pax or {}).items()))


def normalise_mode(kind: EntryKind, mode: int | None) -> int:
    """Return the mode stored for an entry of `kind` whose source mode is `mode`."""
    if kind is EntryKind.DIR:
        return 0o755
    if kind is EntryKind.SYMLINK:
        return 0o777
    return 0o755 if (mode or 0) & 0o111 else 0o644


def compressor_id(compressor: Compressor = "zlib") -> str:
    """Name what produces the deflate bytes, for provenance (e.g. ``zlib-1.2.13``)."""
    if _resolve(compressor) == "pigz":
        return "pigz"
    return f"zlib-{zlib.ZLIB_RUNTIME_VERSION}"


# ---------------------------------------------------------------------------------------------
# Entries: validation, implied directories, order


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip("/"):
        msg = f"bad archive name {name!r}"
        raise ValueError(msg)
    clean = name.rstrip("/")
    parts = clean.split("/")
    if clean.startswith("/") or "\0" in clean or any(p in ("", ".", "..") for p in parts):
        msg = f"bad archive name {name!r}: must be relative, without empty, '.' or '..' parts"
        raise ValueError(msg)
    return clean


def _sort_key(name: str) -> tuple[bytes, ...]:
    return tuple(name.encode(*_ENCODING).split(b"/"))


def prepare(entries: Iterable[ArchiveEntry]) -> list[ArchiveEntry]:
    """Validate `entries`, add the directories they imply and put them in archive order.

    Raises ValueError on a bad name, a duplicate name or a name below a non-directory.
    """
    by_name: dict[str, ArchiveEntry] = {}
    for entry in entries:
        name = _check_name(entry.name)
        if name in by_name:
            msg = f"duplicate archive name {name!r}"
            raise ValueError(msg)
        by_name[name] = entry if name == entry.name else replace(entry, name=name)
    for name in list(by_name):
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            have = by_name.get(parent)
            if have is None:
                by_name[parent] = ArchiveEntry.directory(parent)
            elif have.kind is not EntryKind.DIR:
                msg = f"{name!r} is below {parent!r}, which is not a directory"
                raise ValueError(msg)
    return [by_name[n] for n in sorted(by_name, key=_sort_key)]


# ---------------------------------------------------------------------------------------------
# tar encoding


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode("ascii") + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length = len(str(length).encode()) + len(body)
    return str(length).encode() + body


def _ustar(
    name: bytes, mode: int, size: int, mtime: int, typeflag: bytes, linkname: bytes = b""
) -> bytes:
    fields = [
        name[:100].ljust(100, b"\0"),
        _octal(mode, 8),
        _octal(0, 8),  # uid
        _octal(0, 8),  # gid
        _octal(size, 12),
        _octal(mtime, 12),
        b" " * 8,  # checksum, filled in below
        typeflag,
        linkname[:100].ljust(100, b"\0"),
        b"ustar\x0000",
        b"root".ljust(32, b"\0"),
        b"root".ljust(32, b"\0"),
        _octal(0, 8),  # devmajor
        _octal(0, 8),  # devminor
        b"\0" * 155,  # prefix: unused, long names go to pax records
    ]
    header = b"".join(fields).ljust(_TAR_BLOCK, b"\0")
    checksum = b"%06o\0 " % sum(header)
    return header[:148] + checksum + header[156:]


def _ascii(field: bytes) -> bytes:
    # What the ustar field holds when a pax record carries the real value.
    return bytes(b if b < 0x80 else 0x3F for b in field)


def _fits(field: bytes) -> bool:
    return len(field) <= 100 and field.isascii()


def tar_header(
    name: str,
    kind: EntryKind,
    mode: int,
    size: int,
    mtime: int,
    link: str = "",
    pax: Iterable[tuple[str, bytes]] = (),
) -> bytes:
    """Encode the header block(s) of one member; a pax `x` header first if ustar is too small.

    `pax` adds records (key, raw value) after the path, linkpath and size ones, in the
    order given (an ArchiveEntry keeps them sorted).
    """
    if kind is EntryKind.DIR:
        name += "/"
    raw_name = name.encode(*_ENCODING)
    raw_link = link.encode(*_ENCODING)
    if mtime < 0 or mtime > _MAX_OCTAL_12:
        msg = f"mtime {mtime} out of range"
        raise ValueError(msg)
    records = b""
    if not _fits(raw_name):
        records += _pax_record("path", raw_name)
    if not _fits(raw_link):
        records += _pax_record("linkpath", raw_link)
    if size > _MAX_OCTAL_12:
        records += _pax_record("size", str(size).encode())
    for key, value in pax:
        records += _pax_record(key, value)
    typeflag = {EntryKind.DIR: b"5", EntryKind.SYMLINK: b"2"}.get(kind, b"0")
    header = _ustar(
        _ascii(raw_name), mode, min(size, _MAX_OCTAL_12), mtime, typeflag, _ascii(raw_link)
    )
    if not records:
        return header
    extended = _ustar(_PAX_NAME, 0o644, len(records), mtime, b"x")
    return extended + records + _pad(len(records)) + header


def _pad(size: int) -> bytes:
    return b"\0" * (-size % _TAR_BLOCK)


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    """Open `path` for reading without following a final symlink; it must be a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or exc}"
        raise PackageError(msg) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        msg = f"{path} is not a regular file"
        raise PackageError(msg)
    return fd, st


def _file_chunks(entry: ArchiveEntry, path: Path, mtime: int) -> Iterator[bytes]:
    fd, st = _open_regular(path)
    with os.fdopen(fd, "rb", buffering=0) as handle:
        size = st.st_size
        yield tar_header(
            entry.name,
            EntryKind.FILE,
            normalise_mode(EntryKind.FILE, entry.mode if entry.mode is not None else st.st_mode),
            size,
            mtime,
            pax=entry.pax,
        )
        left = size
        while left:
            chunk = handle.read(min(left, READ_CHUNK))
            if not chunk:
                msg = f"{path} shrank while it was being archived"
                raise PackageError(msg)
            left -= len(chunk)
            yield chunk
        if handle.read(1):
            msg = f"{path} grew while it was being archived"
            raise PackageError(msg)
    if _pad(size):
        yield _pad(size)


def iter_tar(entries: Iterable[ArchiveEntry], mtime: int) -> Iterator[bytes]:
    """Yield the tar stream of `entries` (see :func:`prepare`) as byte chunks."""
    return _iter_prepared(prepare(entries), mtime)


def _iter_prepared(ordered: list[ArchiveEntry], mtime: int) -> Iterator[bytes]:
    total = 0
    for entry in ordered:
        if entry.kind is EntryKind.FILE:
            if not isinstance(entry.source, Path):
                msg = f"{entry.name}: a file entry needs a Path source"
                raise TypeError(msg)
            for chunk in _file_chunks(entry, entry.source, mtime):
                total += len(chunk)
                yield chunk
            continue
        if entry.kind is EntryKind.BYTES:
            if not isinstance(entry.source, bytes):
                msg = f"{entry.name}: a bytes entry needs a bytes source"
                raise TypeError(msg)
            data = entry.source
            block = tar_header(
                entry.name,
                entry.kind,
                normalise_mode(entry.kind, entry.mode),
                len(data),
                mtime,
                pax=entry.pax,
            )
            block += data + _pad(len(data))
        elif entry.kind is EntryKind.SYMLINK:
            if not isinstance(entry.source, str):
                msg = f"{entry.name}: a symlink entry needs a str target"
                raise TypeError(msg)
            block = tar_header(entry.name, entry.kind, 0o777, 0, mtime, entry.source, entry.pax)
        else:
            block = tar_header(entry.name, entry.kind, 0o755, 0, mtime, pax=entry.pax)
        total += len(block)
        yield block
    end = b"\0" * (2 * _TAR_BLOCK)
    total += len(end)
    yield end + b"\0" * (-total % RECORD_SIZE)


# ---------------------------------------------------------------------------------------------
# gzip


def gzip_header(level: int = DEFAULT_LEVEL) -> bytes:
    """Return the 10-byte gzip header: no name, MTIME 0, XFL from the level, OS Unix."""
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, GZIP_OS_UNIX])


def _deflate_block(
    block: bytes | bytearray | memoryview, zdict: bytes, level: int, final: bool
) -> bytes:
    if zdict:
        comp = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        comp = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
    return comp.compress(block) + comp.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


def _jobs(jobs: int) -> int:
    return jobs if jobs > 0 else (os.cpu_count() or 1)


def _resolve(compressor: Compressor) -> Literal["zlib", "pigz"]:
    if compressor == "auto":
        return "pigz" if shutil.which("pigz") else "zlib"
    if compressor not in ("zlib", "pigz"):
        msg = f"unknown compressor {compressor!r} (zlib, pigz or auto)"
        raise ValueError(msg)
    return compressor


def _gzip_zlib(
    chunks: Iterable[bytes], out: BinaryIO, level: int, jobs: int, block_size: int
) -> None:
    out.write(gzip_header(level))
    crc = 0
    size = 0
    tail = b""
    buf = bytearray()
    pending: deque[Future[bytes]] = deque()
    window = 2 * jobs + 2
    pool = (
        ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="kdist-gzip") if jobs > 1 else None
    )

    def submit(block: bytes, final: bool) -> None:
        nonlocal crc, size, tail
        crc = zlib.crc32(block, crc)
        size += len(block)
        zdict = tail
        tail = block[-_WINDOW:] if len(block) >= _WINDOW else (tail + block)[-_WINDOW:]
        if pool is None:
            out.write(_deflate_block(block, zdict, level, final))
            return
        pending.append(pool.submit(_deflate_block, block, zdict, level, final))
        while len(pending) > window:
            out.write(pending.popleft().result())

    try:
        for chunk in chunks:
            buf += chunk
            while len(buf) >= block_size:
                with memoryview(buf) as view:
                    block = bytes(view[:block_size])  # one copy; the view is gone before del
                del buf[:block_size]
                submit(block, final=False)
        submit(bytes(buf), final=True)
        while pending:
            out.write(pending.popleft().result())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    out.write(struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))


def _gzip_pigz(chunks: Iterable[bytes], out: BinaryIO, level: int, jobs: int) -> None:
    # -n: no name and MTIME 0 (the same header as `gzip -n`); -T is not in every pigz.
    argv = ["pigz", "-n", f"-{level}", "--processes", str(jobs), "-c"]
    with (
        tempfile.TemporaryFile() as err,
        subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err) as proc,
    ):
        assert proc.stdin is not None
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # pigz died; its exit status and stderr say why
        except BaseException:
            proc.kill()
            raise
        if proc.wait() != 0:
            err.seek(0)
            text = err.read().decode(errors="replace").strip()
            msg = f"pigz failed (exit {proc.returncode}): {text}"
            raise PackageError(msg)


def gzip_stream(
    chunks: Iterable[bytes],
    out: BinaryIO,
    *,
    level: int = DEFAULT_LEVEL,
    jobs: int = 0,
    compressor: Compressor = "zlib",
    block_size: int = BLOCK_SIZE,
) -> None:
    """Compress the byte stream `chunks` into `out` as one deterministic gzip member."""
    if not 0 <= level <= 9:
        msg = f"compression level {level} is not in 0..9"
        raise ValueError(msg)
    if block_size < _WINDOW:
        msg = f"block size {block_size} is below {_WINDOW}"
        raise ValueError(msg)
    if _resolve(compressor) == "pigz":
        out.flush()
        _gzip_pigz(chunks, out, level, _jobs(jobs))
    else:
        _gzip_zlib(chunks, out, level, _jobs(jobs), block_size)


# ---------------------------------------------------------------------------------------------
# Files

_active: set[str] = set()
_active_lock = threading.Lock()


def write_gzip(
    dest: Path,
    chunks: Iterable[bytes],
    *,
    level: int = DEFAULT_LEVEL,
    jobs: int = 0,
    compressor: Compressor = "zlib",
    block_size: int = BLOCK_SIZE,
) -> Path:
    """Write the gzip of `chunks` to `dest` via `dest.tmp` and an atomic rename; return dest."""
    return _atomic(
        dest,
        lambda out: gzip_stream(
            chunks, out, level=level, jobs=jobs, compressor=compressor, block_size=block_size
        ),
    )


def write_tarball(
    dest: Path,
    entries: Iterable[ArchiveEntry],
    *,
    mtime: int,
    level: int = DEFAULT_LEVEL,
    jobs: int = 0,
    compressor: Compressor = "zlib",
    block_size: int = BLOCK_SIZE,
) -> Path:
    """Write the deterministic tar.gz of `entries` to `dest`; return dest.

    `mtime` is SOURCE_DATE_EPOCH; `jobs` 0 means one thread per core. Raises ValueError for
    bad entries (before anything is written) and PackageError when a source cannot be read.
    """
    ordered = prepare(entries)
    return write_gzip(
        dest,
        _iter_prepared(ordered, mtime),
        level=level,
        jobs=jobs,
        compressor=compressor,
        block_size=block_size,
    )


def write_tar(dest: Path, entries: Iterable[ArchiveEntry], *, mtime: int) -> Path:
    """Write the deterministic, uncompressed tar of `entries` to `dest`; return dest."""
    ordered = prepare(entries)

    def write(out: BinaryIO) -> None:
        for chunk in _iter_prepared(ordered, mtime):
            out.write(chunk)

    return _atomic(dest, write)


def _atomic(dest: Path, write: Callable[[BinaryIO], None]) -> Path:
    key = str(dest.absolute())
    with _active_lock:
        if key in _active:
            msg = f"{dest} is already being written by another thread"
            raise PackageError(msg)
        _active.add(key)
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        with tmp.open("wb") as out:
            write(out)
        tmp.chmod(0o644)
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        with _active_lock:
            _active.discard(key)
    return dest


# ---------------------------------------------------------------------------------------------
# Source trees


def tree_entries(
    root: Path,
    prefix: str,
    *,
    skip: Callable[[str], bool] | None = None,
    exclude: Iterable[Path] = (),
) -> list[ArchiveEntry]:
    """List the entries that store `root` (a file, symlink or directory tree) as `prefix`.

    Symlinks are stored as symlinks and never followed; sockets, FIFOs and devices are
    left out. `skip(basename)` true drops a non-directory (e.g. editor cruft). Directories
    in `exclude` (e.g. the output directory when it lies inside the tree) are left out
    with their contents. Raises PackageError when `root` does not exist.
    """
    try:
        st = root.lstat()
    except OSError as exc:
        msg = f"{root} is missing ({exc.strerror or exc})"
        raise PackageError(msg) from exc
    excluded = set()
    for path in exclude:
        with contextlib.suppress(OSError):
            est = path.stat()
            excluded.add((est.st_dev, est.st_ino))
    found: list[ArchiveEntry] = []
    _add(found, root, prefix, st, skip)
    stack = [(root, prefix)] if stat.S_ISDIR(st.st_mode) else []
    while stack:
        directory, name = stack.pop()
        with os.scandir(directory) as it:
            children = list(it)
        for child in children:
            cst = child.stat(follow_symlinks=False)
            if (cst.st_dev, cst.st_ino) in excluded:
                continue
            child_name = f"{name}/{child.name}"
            if _add(found, Path(child.path), child_name, cst, skip):
                stack.append((Path(child.path), child_name))
    return found


def _add(
    found: list[ArchiveEntry],
    path: Path,
    name: str,
    st: os.stat_result,
    skip: Callable[[str], bool] | None,
) -> bool:
    """Append the entry for `path`; return True when it is a directory to descend into."""
    if stat.S_ISDIR(st.st_mode):
        found.append(ArchiveEntry.directory(name))
        return True
    if skip is not None and skip(path.name):
        return False
    if stat.S_ISREG(st.st_mode):
        found.append(ArchiveEntry.file(name, path))
    elif stat.S_ISLNK(st.st_mode):
        found.append(ArchiveEntry.symlink(name, str(path.readlink())))
    return False
