"""Preflight: what can be checked before any connection, all checked, every problem reported.

A run (and `-n`) first reads the inventory and the profile, decides the version, and looks at
the head node's own side: the output folder (and --timeline's) must be writable, the source must
have what the profile's commands need (a Makefile for `make`), every known_hosts file must be
there. Each problem is one line naming the file, key or host; any problem stops the command
with exit 2 before anything is written or any host is contacted. What only shows while writing
(a disk that fills up) is the head node's failure later (exit 5).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from kdist.errors import ConfigError, PreflightError
from kdist.model import Profile

_T = TypeVar("_T")
MAKEFILES = ("GNUmakefile", "makefile", "Makefile")  # the names GNU make tries, in its order
_MAKE = frozenset({"make", "gmake"})


class Checks:
    """Collects problems instead of stopping at the first one."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def run(self, check: Callable[[], _T]) -> _T | None:
        """Run a check that raises ConfigError; its lines become problems (None when it did)."""
        try:
            return check()
        except PreflightError as exc:
            self.problems += exc.problems
        except ConfigError as exc:
            self.problems += [line for line in str(exc).splitlines() if line.strip()]
        return None

    def add(self, problems: Sequence[str]) -> None:
        """Add problems found by a check that returns them."""
        self.problems += problems

    def done(self) -> None:
        """Raise PreflightError (exit 2) when anything was found."""
        if self.problems:
            raise PreflightError(tuple(dict.fromkeys(self.problems)))


def writable_folder(path: Path, what: str, *, create: bool = True) -> list[str]:
    """A problem when `path` could not be (created, with `create`, and) written as a folder.

    Nothing is written to find out.
    """
    if not create and not path.is_dir():
        return [f"{what} {path}: no such folder"]
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing != path and not existing.is_dir():
        return [f"{what} {path}: {existing} is not a folder"]
    if existing == path and not path.is_dir():
        return [f"{what} {path}: not a folder"]
    if _read_only(existing):
        return [f"{what} {path}: {existing} is on a read-only file system"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"{what} {path}: {existing} is not writable by this user"]
    return []


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def make_needs(source: Path, profile: Profile, keys: Sequence[str]) -> list[str]:
    """A problem per profile command (by key) that runs make where there is no makefile."""
    found = []
    for key in keys:
        argv: tuple[str, ...] = getattr(profile, key)
        if not argv or Path(argv[0]).name not in _MAKE:
            continue
        missing = _missing_makefile(source, argv)
        if missing:
            found.append(f"{profile.source}: {key}: `{argv[0]}` needs {missing}")
    return found


def _missing_makefile(source: Path, argv: Sequence[str]) -> str:
    """What make would miss ('' when it has it); `-C DIR` and `-f FILE` are followed."""
    folder, given = source, None
    words = list(argv[1:])
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else ""
        if word == "-C" and following:
            folder = source / following
        elif word.startswith("-C") and len(word) > 2:
            folder = source / word[2:]
        elif word in ("-f", "--file", "--makefile") and following:
            given = following
        elif word.startswith(("--file=", "--makefile=")):
            given = word.split("=", 1)[1]
    if given is not None:
        path = folder / given
        return "" if path.is_file() else f"{path}, which does not exist"
    if any((folder / name).is_file() for name in MAKEFILES):
        return ""
    return f"a Makefile in {folder} (none of {', '.join(MAKEFILES)} is there)"
