"""Which files a slice may bring back, judged twice: on the host's listing, then in staging.

A build host may be compromised, so nothing it leaves in its artifacts folder is published
because it is there. The Kubernetes layout knows its binaries by name (extra files are
dropped); a generic profile lists them with `artifact_names` (globs; every other file is
refused), or else only regular files that are executables for the slice's platform
(ELF/PE/Mach-O) are accepted, and `artifact_data` (globs, or `true` for any) opts files in as
data. A name with control characters or bytes that are not UTF-8, a directory, a symlink or
anything else that is not a regular file is refused in every layout, one line per file.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from fnmatch import fnmatchcase

from kdist.errors import IntegrityError, MissingArtifacts
from kdist.model import ArtifactRules, Platform
from kdist.remote.hostside import ManifestEntry
from kdist.stages import binfmt
from kdist.text import inert

Expected = ArtifactRules | tuple[str, ...] | None  # a tuple: exact names (the Kubernetes way)

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_KINDS = {"l": "is a symlink", "d": "is a directory (never pulled)", "o": "is not a regular file"}


def rules_of(expected: Expected) -> ArtifactRules:
    """The rules for `expected`: exact names as a tuple, nothing given as the generic default."""
    if isinstance(expected, ArtifactRules):
        return expected
    return ArtifactRules(names=expected, exact=True) if expected is not None else ArtifactRules()


def shown(name: str) -> str:
    """A file name as messages show it: quoted and inert."""
    return f"'{inert(name)}'"


def name_problem(name: str) -> str:
    """Why a host's file name is refused ('' when it is fine)."""
    if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in name):  # surrogate-escaped bytes
        return "has bytes that are not UTF-8 in its name"
    if _CONTROL.search(name):
        return "has control characters in its name"
    return ""


def listing_problems(
    listed: Mapping[str, ManifestEntry], rules: ArtifactRules, where: str
) -> list[str]:
    """One line per listed entry that can never be accepted, judged before anything is pulled."""
    lines = []
    for name, entry in sorted(listed.items()):
        why = name_problem(name) or _KINDS.get(entry.kind, "")
        if not why and rules.names and not rules.exact:
            why = "" if _matches(name, rules.names + rules.data) else _UNEXPECTED
        if why:
            lines.append(f"{where}: {shown(name)} {why}; refused")
    return lines


_UNEXPECTED = "is not an expected artifact (see artifact_names and artifact_data)"


def choose(found: Collection[str], rules: ArtifactRules, where: str) -> tuple[list[str], list[str]]:
    """(files to keep, extra files to drop) of what arrived; MissingArtifacts or IntegrityError."""
    if rules.exact:
        missing = sorted(set(rules.names) - set(found))
        if missing:
            raise MissingArtifacts(f"{where}: build did not produce {', '.join(missing)}")
        return sorted(rules.names), sorted(set(found) - set(rules.names))
    if rules.names:
        absent = [g for g in rules.names if not any(fnmatchcase(n, g) for n in found)]
        absent = absent if rules.every else []
        if absent:
            msg = f"{where}: build did not produce {', '.join(absent)} (artifact_names)"
            raise MissingArtifacts(msg)
        extra = [n for n in sorted(found) if not _matches(n, rules.names + rules.data)]
        if extra:
            lines = [f"{where}: {shown(n)} {_UNEXPECTED}; refused" for n in extra]
            raise IntegrityError("\n".join(lines))
    if not found:
        raise MissingArtifacts(f"{where}: no artifacts were produced")
    return sorted(found), []


def file_problem(name: str, head: bytes, platform: Platform, rules: ArtifactRules) -> str:
    """Why a kept file is refused, from its first bytes ('' when it may be published)."""
    found = binfmt.detect(head)
    if found is not None:
        # An executable must be for this platform, even where data files are welcome.
        return "" if binfmt.matches(head, platform) else f"is a {found} binary"
    if not rules.exact and _matches(name, rules.data):
        return ""
    if rules.exact or rules.names:
        return "is not a recognised executable"
    return f"is not an executable for {platform} (artifact_data lists files shipped as data)"


def _matches(name: str, globs: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, glob) for glob in globs)
