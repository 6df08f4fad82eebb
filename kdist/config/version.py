"""Decide the release version once, on the head node, the way hack/lib/version.sh does."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from kdist.errors import ConfigError
from kdist.model import VersionInfo

FALLBACK_VERSION = "v0.0.0-master+unknown"
_SEMVER = re.compile(
    r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
)
_DESCRIBE3 = re.compile(r"^(v\d+\.\d+\.\d+-[0-9A-Za-z.]+)-(\d+)-g([0-9a-f]+)$")
_DESCRIBE2 = re.compile(r"^(v\d+\.\d+\.\d+)-(\d+)-g([0-9a-f]+)$")


def normalize_describe(describe: str, dirty: bool) -> str:
    """Turn `git describe` output into Kubernetes' semver spelling (+`-dirty`)."""
    if m := _DESCRIBE3.match(describe):
        version = f"{m[1]}.{m[2]}+{m[3]}"
    elif m := _DESCRIBE2.match(describe):
        version = f"{m[1]}-{m[2]}+{m[3]}"
    else:
        version = describe
    return version + ("-dirty" if dirty else "")


def major_minor(version: str) -> tuple[str, str]:
    """KUBE_GIT_MAJOR and KUBE_GIT_MINOR; the minor gets '+' past a release or pre-release."""
    m = re.match(r"^v(\d+)\.(\d+)\.\d+([-+].*)?$", version)
    if not m:
        return "", ""
    return m[1], m[2] + ("+" if m[3] else "")


def check_semver(version: str) -> str:
    """Refuse a version that is not semver (upstream fails the build the same way)."""
    if not _SEMVER.fullmatch(version):
        msg = f"version {version!r} is not valid semver (vX.Y.Z[-pre][+build])"
        raise ConfigError(msg)
    return version


def _git(source: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(source), *args], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def compute_version(
    source: Path, override: str | None = None, epoch: int | None = None
) -> VersionInfo:
    """Version variables of `source`: `override`, else git, else a fallback for non-git trees.

    `epoch` (the caller's SOURCE_DATE_EPOCH) wins over the commit time; a tree without git
    and without `epoch` uses the current time, as upstream does.
    """
    commit = _git(source, "rev-parse", "HEAD^{commit}")
    if commit is None:
        version = override or FALLBACK_VERSION
        return _info(version, "", "unknown", int(time.time()) if epoch is None else epoch)
    # Untracked files count as dirty, like `git status --porcelain` in version.sh; but not
    # SOURCE/_output, kdist's own output folder, which sync never sends to a build.
    dirty = bool(_git(source, "status", "--porcelain", "--", ".", ":(exclude)_output"))
    if epoch is None:
        epoch = int(_git(source, "show", "-s", "--format=%ct", "HEAD") or 0)
    if override:
        version = override
    else:
        describe = _git(source, "describe", "--tags", "--match=v*", "--abbrev=14", commit)
        version = normalize_describe(describe, dirty) if describe else FALLBACK_VERSION
    return _info(version, commit, "dirty" if dirty else "clean", epoch)


def _info(version: str, commit: str, state: str, epoch: int) -> VersionInfo:
    major, minor = major_minor(check_semver(version))
    return VersionInfo(version, commit, state, major, minor, epoch)


def version_warnings(info: VersionInfo) -> list[str]:
    """What a release engineer should know about the version before publishing it."""
    found = []
    if info.tree_state == "dirty":
        found.append(
            f"the tree has uncommitted changes: version {info.version} cannot be rebuilt "
            "from a commit (commit or stash them for a release)"
        )
    if "+" in info.version:  # build metadata: commits past the last v* tag, or no tag at all
        found.append(
            f"version {info.version} is not from a tag (no v* tag on this commit); "
            "tag the commit for a release"
        )
    return found


def version_defs(info: VersionInfo) -> str:
    """The KUBE_GIT_VERSION_FILE content (as .dockerized-kube-version-defs)."""
    pairs = {
        "KUBE_GIT_COMMIT": info.commit,
        "KUBE_GIT_TREE_STATE": info.tree_state,
        "KUBE_GIT_VERSION": info.version,
        "KUBE_GIT_MAJOR": info.major,
        "KUBE_GIT_MINOR": info.minor,
    }
    # Values are semver/hex only (checked above), so single quotes are enough.
    return "".join(f"{k}='{v}'\n" for k, v in pairs.items())
