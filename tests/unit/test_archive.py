"""Tests for kdist.packaging.archive: byte-reproducible tar.gz with parallel gzip."""

from __future__ import annotations

import gzip
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zlib
from pathlib import Path

import pytest

from kdist.errors import PackageError
from kdist.packaging.archive import (
    ArchiveEntry,
    gzip_header,
    gzip_stream,
    iter_tar,
    tree_entries,
    write_tarball,
)

REPO = Path(__file__).resolve().parents[2]
EPOCH = 1_700_000_000

# Builds a small tree and tars it; run in-process and in a subprocess with another TZ/umask.
BUILD_SCRIPT = textwrap.dedent(
    """
    import os, sys, random
    from pathlib import Path
    from kdist.packaging.archive import ArchiveEntry, tree_entries, write_tarball

    root = Path(sys.argv[1])
    out = Path(sys.argv[2])
    rng = random.Random(7)
    (root / "bin").mkdir(parents=True)
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    tool = root / "bin" / "tool"
    tool.write_bytes(rng.randbytes(300_000) + b"text " * 100_000)
    tool.chmod(0o700)
    (root / "docs" / "a.md").write_text("hello\\n")
    (root / "docs" / "deep" / "er" / "b.md").write_text("deep\\n")
    os.symlink("../docs/a.md", root / "bin" / "link")
    os.utime(tool, (12345, 12345))
    entries = tree_entries(root, "pkg")
    entries.append(ArchiveEntry.data("pkg/VERSION", b"v1.2.3\\n"))
    write_tarball(out, entries, mtime=int(sys.argv[3]), jobs=int(sys.argv[4]))
    """
)


def _build(root: Path, out: Path, *, jobs: int, env: dict[str, str] | None = None) -> bytes:
    """Run BUILD_SCRIPT in a subprocess, optionally under `umask 077` and another TZ."""
    script = f'umask {env.pop("UMASK", "022") if env else "022"}; exec "$@"'
    argv = ["sh", "-c", script, "sh", sys.executable, "-c", BUILD_SCRIPT]
    argv += [str(root), str(out), str(EPOCH), str(jobs)]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    subprocess.run(argv, check=True, env=full_env)
    return out.read_bytes()


def _semi_compressible(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += rng.randbytes(rng.randint(100, 3000))
        out += b"k8s.io/kubernetes/pkg/kubelet " * rng.randint(1, 60)
    return bytes(out[:size])


def _member_names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return [m.name + ("/" if m.isdir() else "") for m in tar.getmembers()]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Make a small tree with an executable, a 0600 file, nested dirs and a symlink."""
    root = tmp_path / "tree"
    (root / "b" / "c").mkdir(parents=True)
    (root / "a-b").mkdir()
    (root / "exe").write_bytes(b"#!/bin/sh\n")
    (root / "exe").chmod(0o700)
    (root / "plain").write_bytes(b"plain\n")
    (root / "plain").chmod(0o600)
    (root / "b" / "c" / "file").write_bytes(_semi_compressible(200_000))
    (root / "a-b" / "x").write_bytes(b"x")
    os.symlink("plain", root / "link")
    return root


def test_same_bytes_across_tz_and_umask(tmp_path: Path) -> None:
    """Two builds of the same tree, the second with TZ=Asia/Tokyo and umask 077, match."""
    first = _build(tmp_path / "one", tmp_path / "one.tar.gz", jobs=2, env={"TZ": "UTC"})
    second = _build(
        tmp_path / "two",
        tmp_path / "two.tar.gz",
        jobs=2,
        env={"TZ": "Asia/Tokyo", "UMASK": "077"},
    )
    assert first == second
    assert (tmp_path / "two" / "docs" / "a.md").stat().st_mode & 0o777 == 0o600


def test_jobs_do_not_change_bytes(tmp_path: Path) -> None:
    """The same entries give the same bytes with jobs=1 and jobs=4 over many blocks."""
    big = tmp_path / "big"
    big.write_bytes(_semi_compressible(3 * 1024 * 1024 + 12345))
    entries = [ArchiveEntry.file("k/big", big), ArchiveEntry.data("k/small", b"s")]
    one = write_tarball(tmp_path / "1.tar.gz", entries, mtime=EPOCH, jobs=1).read_bytes()
    four = write_tarball(tmp_path / "4.tar.gz", entries, mtime=EPOCH, jobs=4).read_bytes()
    assert one == four
    small_one = write_tarball(
        tmp_path / "s1.tar.gz", entries, mtime=EPOCH, jobs=1, block_size=64 * 1024
    ).read_bytes()
    small_three = write_tarball(
        tmp_path / "s3.tar.gz", entries, mtime=EPOCH, jobs=3, block_size=64 * 1024
    ).read_bytes()
    assert small_one == small_three
    assert gzip.decompress(small_one) == gzip.decompress(one)


def test_output_is_the_tar_stream_in_one_gzip_member(tmp_path: Path, tree: Path) -> None:
    """The file decompresses, as exactly one gzip member, to the tar stream of the entries."""
    entries = tree_entries(tree, "top")
    out = write_tarball(tmp_path / "t.tar.gz", entries, mtime=EPOCH, jobs=2, block_size=32768)
    data = out.read_bytes()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    raw = inflater.decompress(data) + inflater.flush()
    assert inflater.eof
    assert inflater.unused_data == b""
    assert raw == b"".join(iter_tar(entries, EPOCH))
    assert len(raw) % 10240 == 0


def test_tarfile_and_system_tar_read_it(tmp_path: Path, tree: Path) -> None:
    """Python's tarfile and the system `tar tzf`/`tar xzf` both read the tarball."""
    out = write_tarball(tmp_path / "t.tar.gz", tree_entries(tree, "top"), mtime=EPOCH, jobs=2)
    listed = subprocess.run(
        ["tar", "tzf", str(out)], check=True, capture_output=True, text=True
    ).stdout.split()
    assert listed == _member_names(out)
    extract = tmp_path / "x"
    extract.mkdir()
    subprocess.run(["tar", "xzf", str(out), "-C", str(extract)], check=True)
    for rel in ("exe", "plain", "b/c/file", "a-b/x"):
        assert (extract / "top" / rel).read_bytes() == (tree / rel).read_bytes()
    assert os.readlink(extract / "top" / "link") == "plain"


def test_member_metadata_is_normalised(tmp_path: Path, tree: Path) -> None:
    """Every member has the given mtime, uid/gid 0, root/root and a normalised mode."""
    out = write_tarball(tmp_path / "t.tar.gz", tree_entries(tree, "top"), mtime=EPOCH, jobs=2)
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    for m in members.values():
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (EPOCH, 0, 0, "root", "root")
        assert not {"atime", "ctime", "mtime"} & set(m.pax_headers)
    assert members["top"].mode == 0o755
    assert members["top/b"].isdir() and members["top/b"].mode == 0o755
    assert members["top/exe"].mode == 0o755  # 0700 source: any x bit
    assert members["top/plain"].mode == 0o644  # 0600 source
    assert members["top/link"].issym() and members["top/link"].mode == 0o777
    assert members["top/link"].linkname == "plain"


def test_members_sorted_with_parents_first(tmp_path: Path) -> None:
    """Members are in path-component order and implied directories are emitted first."""
    entries = [
        ArchiveEntry.data("z/b", b""),
        ArchiveEntry.data("a/b/c/d", b""),
        ArchiveEntry.data("a-b", b""),
        ArchiveEntry.data("a/a", b""),
        ArchiveEntry.directory("e"),
    ]
    out = write_tarball(tmp_path / "t.tar.gz", entries, mtime=0, jobs=1)
    assert _member_names(out) == [
        "a/",
        "a/a",
        "a/b/",
        "a/b/c/",
        "a/b/c/d",
        "a-b",
        "e/",
        "z/",
        "z/b",
    ]


def test_gzip_header_has_no_name_and_zero_mtime(tmp_path: Path, tree: Path) -> None:
    """The gzip header is 1f8b08, no flags, MTIME 0, XFL by level and OS 3, like `gzip -n`."""
    out = write_tarball(tmp_path / "t.tar.gz", tree_entries(tree, "top"), mtime=EPOCH)
    assert out.read_bytes()[:10] == bytes.fromhex("1f8b0800000000000003")
    assert gzip_header(9)[8] == 2
    assert gzip_header(1)[8] == 4
    best = write_tarball(tmp_path / "9.tar.gz", [ArchiveEntry.data("f", b"x")], mtime=0, level=9)
    assert best.read_bytes()[:10] == bytes.fromhex("1f8b0800000000000203")


def test_stream_of_exact_block_multiple_is_valid() -> None:
    """A stream that ends on a block boundary still makes a valid gzip file."""
    data = _semi_compressible(4 * 32768)
    out = io.BytesIO()
    gzip_stream([data[:50000], data[50000:]], out, jobs=2, block_size=32768)
    assert gzip.decompress(out.getvalue()) == data
    out_one = io.BytesIO()
    gzip_stream([data], out_one, jobs=1, block_size=32768)
    assert out_one.getvalue() == out.getvalue()


def test_ratio_matches_single_stream_gzip(tmp_path: Path) -> None:
    """Priming each block with the previous 32 KiB keeps the size within 1% of one stream."""
    data = _semi_compressible(2 * 1024 * 1024)
    out = io.BytesIO()
    gzip_stream([data], out, jobs=2, block_size=128 * 1024)
    assert len(out.getvalue()) < len(zlib.compress(data, 6)) * 1.01


def test_long_and_unicode_names_survive(tmp_path: Path) -> None:
    """Names longer than 100 bytes or not ASCII are stored in pax records and read back."""
    long_name = "top/" + "d" * 120 + "/" + "f" * 110
    entries = [ArchiveEntry.data(long_name, b"1"), ArchiveEntry.data("top/ünïcode", b"2")]
    out = write_tarball(tmp_path / "t.tar.gz", entries, mtime=EPOCH, jobs=1)
    names = _member_names(out)
    assert long_name in names and "top/ünïcode" in names
    listed = subprocess.run(
        ["tar", "tzf", str(out)],
        check=True,
        capture_output=True,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    ).stdout.decode()
    assert long_name in listed.split("\n")


@pytest.mark.parametrize("name", ["../x", "/abs", "a//b", "a/./b", ""])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    """Absolute names, '..', '.' and empty components raise ValueError before writing."""
    with pytest.raises(ValueError, match="archive name"):
        write_tarball(tmp_path / "t.tar.gz", [ArchiveEntry.data(name, b"")], mtime=0)
    assert not (tmp_path / "t.tar.gz").exists()


def test_duplicates_and_file_parents_are_refused(tmp_path: Path) -> None:
    """A name twice, or an entry below a file, raises ValueError."""
    with pytest.raises(ValueError, match="duplicate"):
        write_tarball(
            tmp_path / "t.tar.gz",
            [ArchiveEntry.data("a", b""), ArchiveEntry.data("a/", b"")],
            mtime=0,
        )
    with pytest.raises(ValueError, match="not a directory"):
        write_tarball(
            tmp_path / "t.tar.gz",
            [ArchiveEntry.data("a", b""), ArchiveEntry.data("a/b", b"")],
            mtime=0,
        )


def test_symlinked_file_source_is_not_followed(tmp_path: Path) -> None:
    """A file entry whose source is a symlink fails instead of reading the target."""
    secret = tmp_path / "secret"
    secret.write_text("outside")
    os.symlink(secret, tmp_path / "link")
    dest = tmp_path / "t.tar.gz"
    with pytest.raises(PackageError, match="cannot read"):
        write_tarball(dest, [ArchiveEntry.file("k/bin", tmp_path / "link")], mtime=0, jobs=2)
    assert not dest.exists()
    assert not (tmp_path / "t.tar.gz.tmp").exists()


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    """A failing write leaves an existing destination untouched and no temp file."""
    dest = tmp_path / "t.tar.gz"
    dest.write_bytes(b"old")
    with pytest.raises(PackageError):
        write_tarball(dest, [ArchiveEntry.file("k/missing", tmp_path / "nope")], mtime=0)
    assert dest.read_bytes() == b"old"
    assert not (tmp_path / "t.tar.gz.tmp").exists()


def test_tree_entries_skip_specials_cruft_and_excluded(tmp_path: Path) -> None:
    """tree_entries keeps symlinks as links and drops FIFOs, skipped names and excluded dirs."""
    root = tmp_path / "r"
    (root / "out").mkdir(parents=True)
    (root / "out" / "big.tar.gz").write_bytes(b"x")
    (root / "keep").write_text("k")
    (root / "keep~").write_text("cruft")
    os.mkfifo(root / "fifo")
    os.symlink("/etc/passwd", root / "escape")
    entries = tree_entries(root, "p", skip=lambda n: n.endswith("~"), exclude=[root / "out"])
    kinds = {e.name: e.kind.value for e in entries}
    assert kinds == {"p": "dir", "p/keep": "file", "p/escape": "symlink"}
    with pytest.raises(PackageError, match="missing"):
        tree_entries(tmp_path / "absent", "p")


@pytest.mark.skipif(shutil.which("pigz") is None, reason="pigz is not installed")
def test_pigz_path_is_deterministic_and_readable(tmp_path: Path, tree: Path) -> None:
    """With pigz the bytes do not depend on --processes and the header is still `gzip -n`."""
    entries = tree_entries(tree, "top")
    kw = {"mtime": EPOCH, "compressor": "pigz"}
    one = write_tarball(tmp_path / "1.tar.gz", entries, jobs=1, **kw).read_bytes()  # type: ignore[arg-type]
    three = write_tarball(tmp_path / "3.tar.gz", entries, jobs=3, **kw).read_bytes()  # type: ignore[arg-type]
    assert one == three
    assert one[:10] == bytes.fromhex("1f8b0800000000000003")
    assert gzip.decompress(one) == b"".join(iter_tar(entries, EPOCH))
