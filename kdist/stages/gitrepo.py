"""Git answers on build hosts: a small repository that answers as the head node's does.

Version scripts ask git at build time (`git describe --tags --dirty`, `git rev-parse HEAD`,
`git status --porcelain`, the commit time). The synced tree has no `.git`, so kdist ships a
repository made for those questions, which costs little to send:

- every commit reachable from HEAD, as the real objects (so describe's distances and choice of
  tag, commit times, messages and `rev-list --count` are the real ones), and the tags that name
  one of them (annotated tag objects included); other tags cannot change describe's answer;
- the trees of HEAD, which `git status` compares the index with, but no blob at all: status
  hashes the files of the tree and compares hashes, it never reads a blob;
- an index made from those trees plus the head node's staged changes, without stat data, so it
  changes only when HEAD's tree or the staged changes do;
- the current branch, the shallow boundary (a shallow clone stays shallow), and the settings and
  ignore rules that change answers (`core.abbrev`, untracked-file listing, global excludes).

On the head node the repository lives in OUTPUT/.kdist/git and grows by one small pack per run
holding only objects it lacks, so an incremental rsync sends only what is new. On a host it is
pushed to TREE/.kdist/git, and TREE/.git is a directory of the host's own holding HEAD, the
index and `commondir` (git's link to a shared repository, as linked worktrees use): the index
that git refreshes there is neither sent back nor overwritten by the next sync.

A source in a subfolder of its repository gets HEAD's commit with that subfolder as its tree
(a replace ref, so `rev-parse HEAD` still names the real commit) and the ignore rules of the
folders above it as the list of paths they ignore.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kdist.errors import HeadNodeError

MIRROR = ".kdist/git"  # under the tree on a host, and under OUTPUT on the head node
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
MAX_PACKS = 16  # more packs than this are merged into one (git opens every pack it has)
# Settings that change what status, describe or log print; copied as the head node has them.
COPIED_CONFIG = (
    "core.filemode", "core.symlinks", "core.ignorecase", "core.precomposeunicode",
    "core.quotepath", "core.autocrlf", "core.eol", "status.showuntrackedfiles", "log.date",
)  # fmt: skip
# kdist's own folders on a host: never part of the answers (sync never sends them either).
KDIST_EXCLUDES = ("/.kdist/", "/_output/")
# No replacement objects while kdist inspects the mirror itself: it must see what is stored.
_RAW = {"GIT_NO_REPLACE_OBJECTS": "1"}


class GitError(HeadNodeError):
    """git on the head node failed while kdist made the repository for build hosts."""


@dataclass(frozen=True)
class Shipped:
    """What the repository for build hosts holds, as the head node made it."""

    mirror: Path  # on the head node
    commit: str  # HEAD
    digest: str  # everything the answers depend on: refs, index, settings, ignore rules
    new_objects: int  # objects this run added
    size: int  # bytes on disk


@dataclass(frozen=True)
class _Head:
    """The head node's repository as seen from the source folder."""

    source: Path
    gitdir: Path  # the common git dir (where info/exclude and shallow live)
    prefix: str  # the source's folder inside the repository ('' at the top), ending in '/'
    commit: str
    branch: str  # refs/heads/NAME, or '' when HEAD is detached


def _git(
    cwd: Path,
    *args: str,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    ok: Sequence[int] = (0,),
) -> bytes:
    """Run git; its stdout, or GitError naming the command."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
    except OSError as exc:
        raise GitError(f"git {args[0]}: {exc}") from exc
    if done.returncode not in ok:
        why = done.stderr.decode(errors="replace").strip()[-400:]
        raise GitError(f"git {' '.join(args[:3])} in {cwd} failed: {why}")
    return done.stdout


def _text(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    return _git(cwd, *args, env=env).decode().strip()


def _lines(data: bytes) -> list[str]:
    return [line for line in data.decode().splitlines() if line]


def head_of(source: Path) -> _Head | None:
    """The repository `source` is in, or None (not in git, or no commit yet)."""
    try:
        inside = _text(source, "rev-parse", "--is-inside-work-tree")
        commit = _text(source, "rev-parse", "--verify", "-q", "HEAD^{commit}")
    except GitError:
        return None
    if inside != "true" or not commit:
        return None
    gitdir = Path(_text(source, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    prefix = _text(source, "rev-parse", "--show-prefix")
    branch = _git(source, "symbolic-ref", "-q", "HEAD", ok=(0, 1)).decode().strip()
    return _Head(source, gitdir, prefix, commit, branch)


def ship(source: Path, mirror: Path) -> Shipped | None:
    """Make or update the repository for build hosts in `mirror`; None when not in git."""
    head = head_of(source)
    if head is None:
        if mirror.exists():
            shutil.rmtree(mirror)
        return None
    _init(mirror)
    commits, tags = _history(head, mirror)
    # HEAD's trees for status; its parents' too, as `git show -s HEAD` compares with them.
    shown = [head.commit, *_lines(_git(source, "rev-parse", f"{head.commit}^@"))]
    roots = {commit: _tree(head, commit) for commit in shown}
    staged = _staged(head)
    wanted = [*commits, *(t.object for t in tags if t.object != t.commit),
              *_trees(head, roots.values()), *_staged_blobs(staged)]  # fmt: skip
    added = _add_objects(head, mirror, wanted)
    if EMPTY_TREE in roots.values():
        _git(mirror, "--git-dir=.", "hash-object", "-t", "tree", "-w", "--stdin", stdin=b"")
    state = _answers(head, mirror, tags, roots, staged)
    tips = sorted({head.commit, *(t.commit for t in tags)})
    _write(mirror / "kdist" / "tips", "".join(f"{c}\n" for c in tips))
    _merge_packs(mirror)
    digest = hashlib.sha256("\0".join(state).encode()).hexdigest()
    return Shipped(mirror, head.commit, digest, added, _size(mirror))


def _answers(
    head: _Head, mirror: Path, tags: Sequence[_Tag], roots: Mapping[str, str], staged: bytes
) -> list[str]:
    """Write what git answers from besides objects: refs, HEAD, settings, index; their text."""
    refs = _refs(head, mirror, tags, roots)
    _write(mirror / "packed-refs", refs)
    state = f"ref: {head.branch}\n" if head.branch else f"{head.commit}\n"
    _write(mirror / "HEAD", state)
    _write(mirror / "kdist" / "HEAD", state)
    shallow = _shallow(head, mirror)
    _write(mirror / "shallow", shallow)
    config = _config(head)
    _write(mirror / "config", config)
    excludes = _excludes(head)
    _write(mirror / "info" / "exclude", excludes)
    return [state, refs, shallow, config, excludes, _index(mirror, roots[head.commit], staged)]


def _init(mirror: Path) -> None:
    """The folders and files that make `mirror` a git directory (nothing else: no hooks)."""
    for sub in ("objects/pack", "objects/info", "refs/heads", "refs/tags", "info", "kdist"):
        (mirror / sub).mkdir(parents=True, exist_ok=True)
    if not (mirror / "HEAD").is_file():
        _write(mirror / "HEAD", "ref: refs/heads/main\n")
    if not (mirror / "config").is_file():
        _write(mirror / "config", "[core]\n\trepositoryformatversion = 0\n\tbare = true\n")


@dataclass(frozen=True)
class _Tag:
    name: str  # refs/tags/...
    object: str  # what the ref points at (a tag object or a commit)
    commit: str  # the commit it names


def _history(head: _Head, mirror: Path) -> tuple[list[str], list[_Tag]]:
    """The commits the mirror lacks to hold all of HEAD's history, and the tags it can hold.

    Commits the mirror got in earlier runs (its recorded tips and their history) are not
    listed again, so a run walks only new history. Tags that name a commit of the mirror are
    kept: describe only ever finds those reachable from HEAD, the others change no answer.
    """
    tips = _present(mirror, _read(mirror / "kdist" / "tips").split(), "--git-dir=.")
    tips = _present(head.source, tips)  # history rewritten since: those tips are gone
    if _read(head.gitdir / "shallow") or _read(mirror / "shallow"):
        tips = set()  # a boundary may have moved (a deeper fetch): walk all, it is short
    revs = "".join([f"{head.commit}\n", *(f"^{tip}\n" for tip in sorted(tips))])
    commits = _lines(_git(head.source, "rev-list", "--stdin", stdin=revs.encode()))
    tags = _tags(head)
    have = set(commits) | _present(mirror, [t.commit for t in tags], "--git-dir=.")
    return commits, [t for t in tags if t.commit in have]


def _present(repo: Path, names: Iterable[str], *where: str) -> set[str]:
    """The objects among `names` that the repository in `repo` has (`where`: its git dir)."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return set()
    out = _git(repo, *where, "cat-file", "--batch-check=%(objectname)",
               stdin="\n".join(wanted).encode(), env=_RAW)  # fmt: skip
    return {line for line in _lines(out) if not line.endswith(" missing")}


def _tags(head: _Head) -> list[_Tag]:
    """Every tag that names a commit (a tag of a tag is left out)."""
    fmt = "%(objectname) %(objecttype) %(*objecttype) %(*objectname) %(refname)"
    out = _git(head.source, "for-each-ref", f"--format={fmt}", "refs/tags")
    found = []
    for line in _lines(out):
        obj, kind, inner, peeled, name = line.split(" ", 4)
        if kind == "commit":
            found.append(_Tag(name, obj, obj))
        elif kind == "tag" and inner == "commit":
            found.append(_Tag(name, obj, peeled))
    return found


def _tree(head: _Head, commit: str) -> str:
    """The tree a commit stands for on the host: its own, or the source folder's within it."""
    spec = f"{commit}:{head.prefix}" if head.prefix else f"{commit}^{{tree}}"
    out = _git(head.source, "rev-parse", "--verify", "-q", spec, ok=(0, 1)).decode().strip()
    return out or EMPTY_TREE  # an untracked folder: nothing of it is in that commit


def _trees(head: _Head, roots: Iterable[str]) -> list[str]:
    """The root trees and every tree below them."""
    found: dict[str, None] = {}
    for root in dict.fromkeys(roots):
        if root == EMPTY_TREE:
            continue
        found[root] = None
        out = _git(head.source, "ls-tree", "--full-tree", "-r", "-d", "-z",
                   "--format=%(objectname)", root)  # fmt: skip
        found.update(dict.fromkeys(o for o in out.decode().split("\0") if o))
    return list(found)


def _staged(head: _Head) -> bytes:
    """The staged changes of the source folder, as `diff-index --cached -z` records."""
    relative = ["--relative"] if head.prefix else []
    return _git(head.source, "diff-index", "--cached", "-z", "--no-renames", *relative,
                head.commit, "--", ".")  # fmt: skip


def _records(raw: bytes) -> Iterator[tuple[bytes, bytes, bytes, bytes, bytes]]:
    """(new mode, old object, new object, status, path) of each `diff-index -z` record."""
    fields = raw.split(b"\0")
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if meta.startswith(b":"):
            _old_mode, new_mode, old, new, status = meta[1:].split(b" ")
            yield new_mode, old, new, status, path


def _staged_blobs(staged: bytes) -> list[str]:
    """Blobs of staged changes: status pairs staged deletions and additions as renames."""
    found = []
    for mode, old, new, status, _path in _records(staged):
        if mode == b"160000" or status == b"U":  # a submodule's commit is not in this repository
            continue
        found.append((old if status == b"D" else new).decode())
    return [b for b in found if b.strip("0")]


def _add_objects(head: _Head, mirror: Path, wanted: Iterable[str]) -> int:
    """Pack the wanted objects the mirror lacks into one new pack; how many there were."""
    names = list(dict.fromkeys(wanted))
    have = _present(mirror, names, "--git-dir=.")
    missing = [name for name in names if name not in have]
    if missing:
        _write_pack(head.source, mirror.resolve() / "objects" / "pack", missing)
    return len(missing)


def _write_pack(source: Path, folder: Path, names: Sequence[str]) -> None:
    """One pack of `names` from `source`, written straight into `folder` (another disk is fine).

    `git pack-objects BASE` would make its temporary file in the source repository and rename
    it into the mirror, which fails across file systems (an --output on another disk); so the
    pack streams into a file in the mirror and `git index-pack` indexes it there.
    """
    tmp = folder / f"tmp-{os.getpid()}.pack"
    try:
        with tmp.open("wb") as out:
            done = subprocess.run(
                ["git", "pack-objects", "-q", "--stdout"], cwd=source, stdout=out,
                stderr=subprocess.PIPE, input="".join(f"{n}\n" for n in names).encode(),
                check=False,
            )  # fmt: skip
        if done.returncode != 0:
            why = done.stderr.decode(errors="replace").strip()[-400:]
            raise GitError(f"git pack-objects in {source} failed: {why}")
        digest = _text(folder, "index-pack", tmp.name).split()[-1]
        tmp.rename(folder / f"pack-{digest}.pack")  # the pack first: readers look for the .idx
        tmp.with_suffix(".idx").rename(folder / f"pack-{digest}.idx")
    except OSError as exc:
        raise HeadNodeError(f"{folder}: cannot write the git answers' pack: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".idx").unlink(missing_ok=True)


def _refs(head: _Head, mirror: Path, tags: Sequence[_Tag], roots: Mapping[str, str]) -> str:
    """packed-refs: the branch, the tags, and for a subfolder the commits that stand in."""
    refs = {t.name: (t.object, t.commit if t.object != t.commit else "") for t in tags}
    if head.branch:
        refs[head.branch] = (head.commit, "")
    if head.prefix:
        for commit, tree in roots.items():
            refs[f"refs/replace/{commit}"] = (_replacement(head, mirror, commit, tree), "")
    lines = ["# pack-refs with: peeled fully-peeled sorted \n"]
    for name in sorted(refs):
        obj, peeled = refs[name]
        lines.append(f"{obj} {name}\n" + (f"^{peeled}\n" if peeled else ""))
    return "".join(lines)


def _replacement(head: _Head, mirror: Path, commit: str, tree: str) -> str:
    """`commit` with the source folder as its tree, stored in the mirror."""
    raw = _git(head.source, "cat-file", "commit", commit)
    first, _, rest = raw.partition(b"\n")
    if not first.startswith(b"tree "):
        raise GitError(f"{commit}: not a commit object as expected")
    body = f"tree {tree}\n".encode() + rest
    out = _git(mirror, "--git-dir=.", "hash-object", "-t", "commit", "-w", "--stdin", stdin=body)
    return out.decode().strip()


def _shallow(head: _Head, mirror: Path) -> str:
    """A shallow head repository stays shallow: its boundary commits the mirror holds."""
    boundary = _present(mirror, _read(head.gitdir / "shallow").split(), "--git-dir=.")
    return "".join(f"{c}\n" for c in sorted(boundary))


def _config(head: _Head) -> str:
    """The mirror's settings: the answers' own, then the head node's that change answers."""
    short = _text(head.source, "rev-parse", "--short", head.commit)
    lines = [
        "[core]",
        "\trepositoryformatversion = 0",
        "\tbare = false",
        "\tlogallrefupdates = false",
        f"\tabbrev = {len(short)}",  # describe's default abbreviation, as `auto` gives it there
        "\texcludesFile = /dev/null",  # the head node's global excludes are in info/exclude
        "\tuntrackedCache = false",
        "\tfsmonitor = false",
        "[gc]",
        "\tauto = 0",
        "[diff]",  # a submodule's .git is not synced: its state cannot be asked on a host
        "\tignoreSubmodules = all",
    ]
    for key in COPIED_CONFIG:
        value = _git(head.source, "config", "--get", key, ok=(0, 1)).decode().strip()
        if value and "\n" not in value:
            section, name = key.split(".", 1)
            lines += [f"[{section}]", f"\t{name} = {_quoted(value)}"]
    return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _excludes(head: _Head) -> str:
    """info/exclude: the head node's own, its global excludes, and kdist's folders.

    A source in a subfolder misses the .gitignore files above it; the paths they ignore now
    are listed instead.
    """
    parts = [_read(head.gitdir / "info" / "exclude"), _read(_global_excludes(head.source))]
    if head.prefix:
        out = _git(head.source, "ls-files", "-z", "--others", "--ignored", "--exclude-standard",
                   "--directory", "--", ".")  # fmt: skip
        parts.append("".join(f"/{_escape(p)}\n" for p in out.decode().split("\0") if p))
    parts.append("".join(f"{pattern}\n" for pattern in KDIST_EXCLUDES))
    return "".join(p if p.endswith("\n") or not p else p + "\n" for p in parts)


def _global_excludes(source: Path) -> Path:
    found = _git(source, "config", "--path", "--get", "core.excludesFile", ok=(0, 1)).decode()
    if found.strip():
        return Path(found.strip()).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "git" / "ignore"


def _escape(path: str) -> str:
    """A path as a gitignore pattern that matches only itself."""
    out = "".join(f"\\{ch}" if ch in "\\*?[!#" else ch for ch in path)
    return out[:-1] + "\\ " if out.endswith(" ") else out


def _index(mirror: Path, tree: str, staged: bytes) -> str:
    """kdist/index: HEAD's tree plus the staged changes, no stat data; remade when they change."""
    key = hashlib.sha256(tree.encode() + b"\0" + staged).hexdigest()
    if _read(mirror / "kdist" / "index.key").strip() == key:
        return key
    fresh = mirror / "kdist" / "index.new"
    fresh.unlink(missing_ok=True)
    env = {"GIT_INDEX_FILE": str(fresh.resolve()), **_RAW}
    _git(mirror, "--git-dir=.", "read-tree", tree, env=env)
    info = b"".join(
        b"%s %s\t%s\0" % (b"0" if status == b"D" else mode, new, path)
        for mode, _old, new, status, path in _records(staged)
        if status != b"U"  # unmerged: status on the host sees the conflict markers instead
    )
    if info:
        _git(mirror, "--git-dir=.", "--work-tree=/", "update-index", "-z", "--index-info",
             stdin=info, env=env)  # fmt: skip
    _bump(fresh, mirror / "kdist" / "index")
    fresh.replace(mirror / "kdist" / "index")
    _write(mirror / "kdist" / "index.key", key + "\n")
    return key


def _merge_packs(mirror: Path) -> None:
    """Merge the packs into one when there are many (a full resend of the mirror, rarely)."""
    packs = sorted((mirror / "objects" / "pack").glob("pack-*.pack"))
    if len(packs) <= MAX_PACKS:
        return
    out = _git(mirror, "--git-dir=.", "cat-file", "--batch-all-objects",
               "--batch-check=%(objectname)", env=_RAW)  # fmt: skip
    base = str(mirror.resolve() / "objects" / "pack" / "pack")
    made = _git(mirror, "--git-dir=.", "pack-objects", base, stdin=out, env=_RAW).decode().strip()
    for pack in packs:
        if made not in pack.name:
            for suffix in (".pack", ".idx", ".rev"):
                pack.with_suffix(suffix).unlink(missing_ok=True)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return ""


def _write(path: Path, text: str) -> None:
    """Write a file when its content changes, always to a later second than before.

    rsync's quick check compares sizes and whole seconds: a ref moved within the same second
    keeps its size, so only a later mtime makes the next sync send it.
    """
    if _read(path) == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    _bump(tmp, path)
    tmp.replace(path)


def _bump(new: Path, old: Path) -> None:
    """Give `new` an mtime at least a second later than `old`'s (see _write)."""
    if old.exists():
        later = max(time.time_ns(), old.stat().st_mtime_ns + 1_000_000_000)
        os.utime(new, ns=(later, later))


def _size(mirror: Path) -> int:
    return sum(p.stat().st_size for p in mirror.rglob("*") if p.is_file())
