"""The tree digest and its stat cache: same answer as reading everything, every change seen."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kdist.engine import treedigest
from kdist.engine.treedigest import RACY_MARGIN_NS, tree_digest

HOUR_NS = 3600 * 10**9


def later() -> int:
    """A clock an hour ahead: every file in the tree counts as settled, so all are cached."""
    return time.time_ns() + HOUR_NS


def tick() -> None:
    """Let the kernel's coarse timestamp clock move on, so a change gets a new ctime."""
    time.sleep(0.05)


def plain_digest(source: Path) -> str:
    """The digest as kdist computed it before the cache: os.walk, read every file."""
    digest = hashlib.sha256()
    for top, dirs, files in os.walk(source):
        rel_top = Path(top).relative_to(source)
        if rel_top == Path():
            dirs[:] = [d for d in dirs if d not in {"_output", ".git"}]
        dirs.sort()
        for name in sorted(files + [d for d in dirs if (Path(top) / d).is_symlink()]):
            path = Path(top) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                body = b"L" + str(path.readlink()).encode()
            elif stat.S_ISREG(info.st_mode):
                x = b"X" if info.st_mode & 0o111 else b"F"
                body = x + hashlib.sha256(path.read_bytes()).digest()
            else:
                continue
            digest.update(path.relative_to(source).as_posix().encode() + b"\0" + body + b"\n")
    return digest.hexdigest()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small source tree: nested packages, a script, symlinks, and what sync leaves out."""
    root = tmp_path / "src"
    for rel, text in {
        "go.mod": "module example\n",
        "cmd/app/main.go": "package main\n",
        "pkg/a/a.go": "package a\n",
        "pkg/a/b/b.go": "package b\n",
        "pkg/ab.go": "package pkg\n",
        "hack/build.sh": "#!/bin/sh\n",
        "_output/bin/app": "binary",
        ".git/HEAD": "ref: refs/heads/main\n",
        "pkg/_output/kept.go": "package kept\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "hack/build.sh").chmod(0o755)
    (root / "link").symlink_to("go.mod")
    (root / "pkglink").symlink_to("pkg")
    (root / "broken").symlink_to("nowhere")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """Where the stat cache goes (as under an output folder)."""
    return tmp_path / "out" / ".kdist" / "treecache"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The files the digest reads, in order."""
    seen: list[bytes] = []
    real = treedigest._sha256

    def counting(path: bytes) -> bytes:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(treedigest, "_sha256", counting)
    yield seen


def test_digest_with_and_without_the_cache_is_the_plain_one(tree: Path, cache: Path) -> None:
    """Cold cache, warm cache and no cache all give the digest of reading every file."""
    expected = plain_digest(tree)
    assert tree_digest(tree) == expected
    assert tree_digest(tree, cache, later) == expected
    assert cache.is_file()
    assert tree_digest(tree, cache, later) == expected


def test_an_unchanged_tree_is_not_read_again(tree: Path, cache: Path, reads: list[bytes]) -> None:
    """With a warm cache of settled files nothing is read; without one every file is."""
    tree_digest(tree, cache, later)
    assert len(reads) == 7  # the regular files sync sends
    reads.clear()
    tree_digest(tree, cache, later)
    assert reads == []


def _append_byte(root: Path) -> None:
    with (root / "pkg/a/a.go").open("ab") as handle:
        handle.write(b"\n")


def _flip_byte_same_size_same_mtime(root: Path) -> None:
    """Same size, and the mtime put back as `touch -d` would: only the ctime tells."""
    path = root / "pkg/a/b/b.go"
    before = path.stat()
    path.write_text("package c\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _rename(root: Path) -> None:
    (root / "pkg/ab.go").rename(root / "pkg/ba.go")


def _chmod_x(root: Path) -> None:
    (root / "cmd/app/main.go").chmod(0o755)


def _retarget_symlink(root: Path) -> None:
    (root / "link").unlink()
    (root / "link").symlink_to("cmd/app/main.go")


def _replace_with_copy_of_other_content(root: Path) -> None:
    """A new inode with the old file's size and times (cp -p, then mv over it)."""
    path = root / "pkg/a/a.go"
    spare = root / "spare"
    spare.write_text("package z\n")
    info = path.stat()
    os.utime(spare, ns=(info.st_atime_ns, info.st_mtime_ns))
    spare.replace(path)


def _add_file(root: Path) -> None:
    (root / "pkg/a/new.go").write_text("package a\n")


def _delete_file(root: Path) -> None:
    (root / "pkg/a/b/b.go").unlink()


CHANGES: dict[str, Callable[[Path], None]] = {
    "one byte appended": _append_byte,
    "same size, mtime put back": _flip_byte_same_size_same_mtime,
    "rename": _rename,
    "mode change": _chmod_x,
    "symlink retargeted": _retarget_symlink,
    "replaced by another inode": _replace_with_copy_of_other_content,
    "file added": _add_file,
    "file deleted": _delete_file,
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=list(CHANGES))
def test_every_change_is_seen_through_a_warm_cache(
    tree: Path, cache: Path, change: Callable[[Path], None]
) -> None:
    """After any change the cached digest differs from before and equals the plain one."""
    before = tree_digest(tree, cache, later)
    tick()
    change(tree)
    after = tree_digest(tree, cache, later)
    assert after != before
    assert after == plain_digest(tree)


def test_touching_a_file_reads_it_again_but_changes_nothing(
    tree: Path, cache: Path, reads: list[bytes]
) -> None:
    """A new mtime with the same bytes costs one read and leaves the digest as it was."""
    before = tree_digest(tree, cache, later)
    reads.clear()
    tick()
    (tree / "go.mod").touch()
    assert tree_digest(tree, cache, later) == before
    assert reads == [os.fsencode(tree / "go.mod")]


def test_young_files_are_not_trusted_from_the_cache(
    tree: Path, cache: Path, reads: list[bytes]
) -> None:
    """Racy git: files changed within the margin before a scan are read again on every scan.

    A second write within one tick of the timestamp clock can leave size, mtime and ctime
    all as they were; such a file is never answered from the cache until it has settled.
    """
    now = time.time_ns()
    tree_digest(tree, cache, lambda: now)  # every file is younger than the margin
    assert not cache.exists() or treedigest._load(cache, os.fsencode(tree)) == {}
    reads.clear()
    tree_digest(tree, cache, lambda: now)
    assert len(reads) == 7
    reads.clear()
    tree_digest(tree, cache, lambda: now + RACY_MARGIN_NS + 10**9)  # now they have settled
    tree_digest(tree, cache, lambda: now + RACY_MARGIN_NS + 10**9)
    assert len(reads) == 7  # read once more, then cached


def test_a_damaged_or_foreign_cache_is_ignored(tree: Path, cache: Path, tmp_path: Path) -> None:
    """Garbage, a truncated file and another tree's cache all count as no cache."""
    expected = plain_digest(tree)
    tree_digest(tree, cache, later)
    good = cache.read_bytes()
    for damaged in (b"garbage", good[:-5], good + b"x", good.replace(b"\0\0\0", b"\0\0")):
        cache.write_bytes(damaged)
        assert tree_digest(tree, cache, later) == expected
    other = tmp_path / "other"
    (other / "pkg").mkdir(parents=True)
    (other / "pkg/a.go").write_text("package a\n")
    assert tree_digest(other, cache, later) == plain_digest(other)
    assert tree_digest(tree, cache, later) == expected


def test_an_unwritable_cache_only_costs_speed(tree: Path, tmp_path: Path) -> None:
    """A cache path that cannot be written (its folder is a file) still gives the digest."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert tree_digest(tree, blocker / "treecache", later) == plain_digest(tree)
