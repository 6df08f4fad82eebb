"""Artifact rules: what a slice may bring back, from the host's listing and from staging."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kdist.config.loader import load_yaml_text
from kdist.config.profile import parse_profile
from kdist.errors import IntegrityError, MissingArtifacts, ProfileError
from kdist.model import ArtifactRules, Platform, Profile
from kdist.remote.hostside import ManifestEntry
from kdist.stages import artifacts
from kdist.stages.collect import set_modes, verify_staging
from kdist.testing.fake import binary

AMD64, ARM64 = Platform("linux", "amd64"), Platform("linux", "arm64")
WHERE = "h2: linux/amd64"


def entry(kind: str = "f") -> ManifestEntry:
    """A listed entry of `kind`, fresh, with a digest when it is a file."""
    regular = kind == "f"
    return ManifestEntry(kind, 1 if regular else None, "0" * 64 if regular else None, True, "x")  # type: ignore[arg-type]


def staged(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A staging folder holding `files`."""
    folder = tmp_path / "staging"
    folder.mkdir()
    for name, body in files.items():
        (folder / name).write_bytes(body)
    return folder


def test_the_listing_refuses_bad_names_and_non_files_one_line_each() -> None:
    """Control characters, bytes that are not UTF-8, folders, links and FIFOs: all named at once."""
    listed = {
        "ok": entry(),
        "evil\x1b]0;t\x07": entry(),
        b"bad-\xff".decode("utf-8", "surrogateescape"): entry(),
        "new\nline": entry(),
        "sub": entry("d"),
        "link": entry("l"),
        "fifo": entry("o"),
    }
    lines = artifacts.listing_problems(listed, ArtifactRules(), WHERE)
    assert lines == [
        f"{WHERE}: 'bad-\\xff' has bytes that are not UTF-8 in its name; refused",
        f"{WHERE}: 'evil\\x1b]0;t\\x07' has control characters in its name; refused",
        f"{WHERE}: 'fifo' is not a regular file; refused",
        f"{WHERE}: 'link' is a symlink; refused",
        f"{WHERE}: 'new\\x0aline' has control characters in its name; refused",
        f"{WHERE}: 'sub' is a directory (never pulled); refused",
    ]


def test_the_listing_refuses_files_no_glob_names() -> None:
    """With artifact_names, a file matching neither names nor data is refused before the pull."""
    rules = ArtifactRules(names=("crictl*",), data=("*.json",))
    listed = {"crictl": entry(), "crictl.exe": entry(), "meta.json": entry(), "x.sh": entry()}
    assert artifacts.listing_problems(listed, rules, WHERE) == [
        f"{WHERE}: 'x.sh' is not an expected artifact (see artifact_names and artifact_data); "
        "refused"
    ]


def test_generic_default_accepts_only_executables_for_the_platform(tmp_path: Path) -> None:
    """No artifact_names: a script, data and a wrong binary are refused, one line each."""
    folder = staged(
        tmp_path,
        {
            "tool": binary(AMD64),
            "install.sh": b"#!/bin/sh\necho hi\n",
            "README": b"hello\n",
            "other": binary(ARM64),
        },
    )
    with pytest.raises(IntegrityError) as caught:
        verify_staging(folder, AMD64, ArtifactRules(), "h2")
    assert str(caught.value).splitlines() == [
        f"{WHERE}: README is not an executable for linux/amd64 (artifact_data lists files "
        "shipped as data); refused",
        f"{WHERE}: install.sh is not an executable for linux/amd64 (artifact_data lists files "
        "shipped as data); refused",
        f"{WHERE}: other is a linux/arm64 binary; refused",
    ]


def test_data_files_opted_in_arrive_as_0644_but_never_a_wrong_binary(tmp_path: Path) -> None:
    """artifact_data lets data in (mode 0644); an executable for another platform still is not."""
    rules = ArtifactRules(data=("*",))
    folder = staged(tmp_path, {"tool": binary(AMD64), "README": b"hello\n"})
    names = verify_staging(folder, AMD64, rules, "h2")
    set_modes(folder, names)
    assert names == ["README", "tool"]
    assert stat.S_IMODE((folder / "README").stat().st_mode) == 0o644
    (folder / "other").write_bytes(binary(ARM64))
    with pytest.raises(IntegrityError, match="other is a linux/arm64 binary"):
        verify_staging(folder, AMD64, rules, "h2")


def test_artifact_names_must_each_be_built_and_are_executables(tmp_path: Path) -> None:
    """Each glob must match a file (except for build WHAT); a named file must run there."""
    rules = ArtifactRules(names=("crictl", "critest"))
    folder = staged(tmp_path, {"crictl": binary(AMD64)})
    with pytest.raises(MissingArtifacts, match="did not produce critest"):
        verify_staging(folder, AMD64, rules, "h2")
    subset = ArtifactRules(names=("crictl", "critest"), every=False)
    assert verify_staging(folder, AMD64, subset, "h2") == ["crictl"]
    (folder / "critest").write_bytes(b"#!/bin/sh\n")
    with pytest.raises(IntegrityError, match="critest is not a recognised executable"):
        verify_staging(folder, AMD64, rules, "h2")


def test_names_in_staging_are_checked_again(tmp_path: Path) -> None:
    """A bad name that reached staging (no listing: the head node's own build) is refused."""
    folder = staged(tmp_path, {"tool\x1b[2J": binary(AMD64)})
    with pytest.raises(IntegrityError, match=r"'tool\\x1b\[2J' has control characters"):
        verify_staging(folder, AMD64, ArtifactRules(), "h2")


def test_exact_names_drop_extra_files(tmp_path: Path) -> None:
    """The Kubernetes layout: extras are removed, not refused; a tuple means the same."""
    folder = staged(tmp_path, {"kubectl": binary(AMD64), "junk": b"x"})
    assert verify_staging(folder, AMD64, ("kubectl",), "h2") == ["kubectl"]
    assert not (folder / "junk").exists()


def profile(extra: str) -> Profile:
    """A generic profile with `extra` YAML lines."""
    text = "name: t\nbuild: make\nplatforms: [linux/amd64]\nartifacts: bin/{os}/{arch}\n" + extra
    return parse_profile(load_yaml_text(text, "kdist.yaml", ProfileError), "kdist.yaml")


def test_profile_keys_for_the_rules() -> None:
    """artifact_names and artifact_data are globs; artifact_data may be true."""
    parsed = profile("artifact_names: [crictl, 'critest*']\nartifact_data: true\n")
    assert parsed.artifact_names == ("crictl", "critest*")
    assert parsed.artifact_data == ("*",)
    assert profile("artifact_data: ['*.json']\n").artifact_data == ("*.json",)
    with pytest.raises(ProfileError, match=r"artifact_names\[0\]: must be a file name pattern"):
        profile("artifact_names: [bin/crictl]\n")
    with pytest.raises(ProfileError, match="is for layout: generic"):
        parse_profile(
            load_yaml_text("layout: kubernetes\nartifact_data: true\n", "k.yaml", ProfileError),
            "k.yaml",
        )
