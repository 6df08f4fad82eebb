"""Unit tests for kdist.config.version: describe normalisation, semver checks and git-derived versions."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from kdist.config.version import (
    FALLBACK_VERSION,
    check_semver,
    compute_version,
    major_minor,
    normalize_describe,
    version_defs,
    version_warnings,
)
from kdist.errors import ConfigError
from kdist.model import VersionInfo

T1 = 1700000000
T2 = 1700003600
HEX = "0123456789abcd"


@pytest.fixture(name="git_env")
def fixture_git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate git from the user's configuration and give it a fixed identity."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "kdist test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.invalid")
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)


def _git(repo: Path, *args: str, when: int = T1) -> str:
    stamp = f"@{when} +0000"
    done = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
    )
    return done.stdout.strip()


@pytest.fixture(name="repo")
def fixture_repo(tmp_path: Path, git_env: None) -> Path:
    """A git repository with one commit at T1, tagged v1.2.3."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "main.go").write_text("package main\n", encoding="utf-8")
    _git(repo, "add", "main.go")
    _git(repo, "commit", "-q", "-m", "first")
    _git(repo, "tag", "v1.2.3")
    return repo


@pytest.mark.parametrize(
    ("describe", "dirty", "expected"),
    [
        (f"v1.2.0-alpha.1-5-g{HEX}", False, f"v1.2.0-alpha.1.5+{HEX}"),
        (f"v1.2.0-alpha.1-5-g{HEX}", True, f"v1.2.0-alpha.1.5+{HEX}-dirty"),
        (f"v1.2.0-5-g{HEX}", False, f"v1.2.0-5+{HEX}"),
        (f"v1.2.0-5-g{HEX}", True, f"v1.2.0-5+{HEX}-dirty"),
        ("v1.2.0", False, "v1.2.0"),
        ("v1.2.0", True, "v1.2.0-dirty"),
        ("v1.31.0-rc.0", False, "v1.31.0-rc.0"),
    ],
)
def test_normalize_describe(describe: str, dirty: bool, expected: str) -> None:
    """`git describe` output becomes Kubernetes' semver spelling, with -dirty when dirty."""
    assert normalize_describe(describe, dirty) == expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v1.31.0", ("1", "31")),
        ("v1.31.0-alpha.1", ("1", "31+")),
        (f"v1.31.0-5+{HEX}", ("1", "31+")),
        ("v1.31.0+meta", ("1", "31+")),
        ("v1.2.3-dirty", ("1", "2+")),
        ("1.31.0", ("", "")),
        ("banana", ("", "")),
    ],
)
def test_major_minor(version: str, expected: tuple[str, str]) -> None:
    """Major and minor come from the version; the minor gets '+' past a release."""
    assert major_minor(version) == expected


@pytest.mark.parametrize(
    "version", ["v1.2.3", "v0.0.0-master+unknown", f"v1.2.0-alpha.1.5+{HEX}-dirty", "v10.20.30"]
)
def test_check_semver_accepts_valid_versions(version: str) -> None:
    """Valid semver with a leading v is returned unchanged."""
    assert check_semver(version) == version


@pytest.mark.parametrize(
    "version",
    ["1.2.3", "v1.2", "v01.2.3", "v1.2.3-", "v1.2.3+", "v1.2.3 ", "v1.2.3\n", "", "v1.2.3-a b"],
)
def test_check_semver_refuses_invalid_versions(version: str) -> None:
    """Anything that is not vX.Y.Z[-pre][+build] is a ConfigError quoting the version."""
    with pytest.raises(ConfigError) as info:
        check_semver(version)
    assert repr(version) in str(info.value)
    assert "not valid semver" in str(info.value)


def test_tagged_clean_commit(repo: Path) -> None:
    """A clean checkout of tag v1.2.3 is version v1.2.3 with the commit's time as epoch."""
    info = compute_version(repo)
    assert info.version == "v1.2.3"
    assert info.tree_state == "clean"
    assert info.commit == _git(repo, "rev-parse", "HEAD")
    assert len(info.commit) == 40
    assert (info.major, info.minor) == ("1", "2")
    assert info.source_date_epoch == T1


def test_commit_after_tag(repo: Path) -> None:
    """One commit past v1.2.3 is v1.2.3-1+<14 hex of the commit>, dated by the new commit."""
    (repo / "main.go").write_text("package main\n\nfunc main() {}\n", encoding="utf-8")
    _git(repo, "commit", "-q", "-a", "-m", "second", when=T2)
    info = compute_version(repo)
    head = _git(repo, "rev-parse", "HEAD")
    assert info.version == f"v1.2.3-1+{head[:14]}"
    assert info.commit == head
    assert info.tree_state == "clean"
    assert info.source_date_epoch == T2
    assert (info.major, info.minor) == ("1", "2+")


def test_untracked_file_makes_the_tree_dirty(repo: Path) -> None:
    """An untracked file marks the tree dirty and appends -dirty to the version."""
    (repo / "notes.txt").write_text("scratch\n", encoding="utf-8")
    info = compute_version(repo)
    assert info.version == "v1.2.3-dirty"
    assert info.tree_state == "dirty"
    assert info.minor == "2+"


def test_kdist_output_folder_leaves_the_tree_clean(repo: Path) -> None:
    """SOURCE/_output (kdist's logs and binaries, never synced) does not make the tree dirty."""
    (repo / "_output" / "logs").mkdir(parents=True)
    (repo / "_output" / "logs" / "linux-amd64.log").write_text("built\n", encoding="utf-8")
    assert compute_version(repo).version == "v1.2.3"
    (repo / "_outputs").write_text("not ours\n", encoding="utf-8")
    assert compute_version(repo).version == "v1.2.3-dirty"


def test_override_keeps_git_facts(repo: Path) -> None:
    """An override replaces the version but keeps the commit, state and epoch from git."""
    info = compute_version(repo, "v9.8.7")
    assert info.version == "v9.8.7"
    assert info.commit == _git(repo, "rev-parse", "HEAD")
    assert info.source_date_epoch == T1
    assert (info.major, info.minor) == ("9", "8")


def test_invalid_override_is_refused(repo: Path) -> None:
    """A non-semver override is a ConfigError."""
    with pytest.raises(ConfigError, match="not valid semver"):
        compute_version(repo, "latest")


def test_untagged_repository_falls_back(tmp_path: Path, git_env: None) -> None:
    """A git tree without v* tags gets the fallback version but a real commit and epoch."""
    repo = tmp_path / "untagged"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f").write_text("x\n", encoding="utf-8")
    _git(repo, "add", "f")
    _git(repo, "commit", "-q", "-m", "only", when=T2)
    info = compute_version(repo)
    assert info.version == FALLBACK_VERSION
    assert info.commit == _git(repo, "rev-parse", "HEAD")
    assert info.source_date_epoch == T2


def test_non_git_folder_falls_back(tmp_path: Path, git_env: None) -> None:
    """A folder outside git gets the fallback version, no commit, unknown state, epoch now."""
    folder = tmp_path / "plain"
    folder.mkdir()
    before = int(time.time())
    info = compute_version(folder)
    assert info.version == FALLBACK_VERSION
    assert info.commit == ""
    assert info.tree_state == "unknown"
    assert before <= info.source_date_epoch <= int(time.time()) + 1
    assert (info.major, info.minor) == ("0", "0+")


def test_non_git_folder_with_override(tmp_path: Path, git_env: None) -> None:
    """Outside git an override is used as-is, and a given epoch is kept."""
    info = compute_version(tmp_path, "v1.0.0", epoch=1234)
    assert info.version == "v1.0.0"
    assert info.source_date_epoch == 1234
    assert info.tree_state == "unknown"


def test_version_defs_lines() -> None:
    """version_defs writes one KEY='value' line per KUBE_GIT variable, in a fixed order."""
    info = VersionInfo("v1.2.3-1+abc", "f" * 40, "clean", "1", "2+", T1)
    assert version_defs(info).splitlines() == [
        f"KUBE_GIT_COMMIT='{'f' * 40}'",
        "KUBE_GIT_TREE_STATE='clean'",
        "KUBE_GIT_VERSION='v1.2.3-1+abc'",
        "KUBE_GIT_MAJOR='1'",
        "KUBE_GIT_MINOR='2+'",
    ]
    assert version_defs(info).endswith("\n")


def test_version_defs_is_sourceable(tmp_path: Path, repo: Path) -> None:
    """The defs file from a real repository can be sourced by sh and gives back the values."""
    info = compute_version(repo)
    defs = tmp_path / "defs"
    defs.write_text(version_defs(info), encoding="utf-8")
    script = '. "$1" && echo "$KUBE_GIT_VERSION $KUBE_GIT_MINOR $KUBE_GIT_TREE_STATE"'
    done = subprocess.run(
        ["sh", "-c", script, "sh", str(defs)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == "v1.2.3 2 clean\n"


def test_warnings_for_a_dirty_tree_and_a_version_not_from_a_tag(repo: Path) -> None:
    """A clean tagged tree has no warning; a dirty one and one past the tag each get one."""
    assert version_warnings(compute_version(repo)) == []
    (repo / "notes.txt").write_text("scratch\n", encoding="utf-8")
    (dirty,) = version_warnings(compute_version(repo))
    assert "uncommitted changes" in dirty
    _git(repo, "add", "notes.txt")
    _git(repo, "commit", "-q", "-m", "more", when=T2)
    (untagged,) = version_warnings(compute_version(repo))
    assert "is not from a tag" in untagged
