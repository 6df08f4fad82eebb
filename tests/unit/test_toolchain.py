"""Toolchain agreement: the pin, the hosts, drift refused or recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdist.engine import toolchain
from kdist.engine.toolchain import Toolchain
from kdist.errors import ConfigError


def test_go_version_is_read_from_go_version_output() -> None:
    """`go version` output gives goX.Y.Z; anything else gives ''."""
    assert toolchain.parse_go_version("go version go1.22.4 linux/amd64\n") == "go1.22.4"
    assert toolchain.parse_go_version("go version go1.23rc1 linux/arm64") == "go1.23rc1"
    assert toolchain.parse_go_version("sh: go: not found") == ""


def test_pin_file_is_read_and_checked(tmp_path: Path) -> None:
    """`.go-version` holds 1.22.4 or go1.22.4; garbage is a configuration error."""
    assert toolchain.read_pin(tmp_path) is None
    (tmp_path / ".go-version").write_text("go1.22.4\n")
    assert toolchain.read_pin(tmp_path) == "1.22.4"
    (tmp_path / ".go-version").write_text("latest\n")
    with pytest.raises(ConfigError, match=r"\.go-version"):
        toolchain.read_pin(tmp_path)


def test_pin_matches_whole_version_components() -> None:
    """Pin 1.22 takes 1.22.x but not 1.220; pin 1.22.4 takes only 1.22.4."""
    assert toolchain.matches_pin("go1.22.7", "1.22")
    assert not toolchain.matches_pin("go1.220.1", "1.22")
    assert toolchain.matches_pin("go1.22.4", "1.22.4")
    assert not toolchain.matches_pin("go1.22.5", "1.22.4")


def test_disagreeing_hosts_are_refused_with_names_and_versions() -> None:
    """Two hosts with different Go versions: exit 2, both hosts and versions named."""
    hosts = {"h1": Toolchain("go1.22.4"), "h2": Toolchain("go1.21.13")}
    with pytest.raises(ConfigError) as caught:
        toolchain.check(hosts, None, allow_drift=False)
    assert "h1 go1.22.4" in str(caught.value) and "h2 go1.21.13" in str(caught.value)
    assert caught.value.exit_status == 2


def test_pin_mismatch_is_refused_even_when_hosts_agree() -> None:
    """Every host agrees with the others but not with `.go-version`: refused."""
    hosts = {"h1": Toolchain("go1.22.4"), "h2": Toolchain("go1.22.4")}
    with pytest.raises(ConfigError, match=r"h1: go1.22.4 does not match \.go-version 1.21"):
        toolchain.check(hosts, "1.21", allow_drift=False)


def test_drift_is_recorded_when_allowed() -> None:
    """With drift allowed the check passes and says what differed."""
    hosts = {"h1": Toolchain("go1.22.4"), "h2": Toolchain("go1.21.13")}
    agreement = toolchain.check(hosts, None, allow_drift=True)
    assert not agreement.agreed
    assert any("h2 go1.21.13" in line for line in agreement.drift)


def test_image_digest_is_part_of_the_toolchain() -> None:
    """In container mode one image name with two ids disagrees; two names (per platform) don't."""
    one = {"h1": Toolchain("go1.22.4", "b@sha256:aa"), "h2": Toolchain("go1.22.4", "b@sha256:bb")}
    with pytest.raises(ConfigError, match="sha256:bb"):
        toolchain.check(one, None, allow_drift=False)
    two = {"h1": Toolchain("go1.22.4", "b@sha256:aa"), "h2": Toolchain("go1.22.4", "c@sha256:bb")}
    assert toolchain.check(two, None, allow_drift=False).agreed


def test_a_failover_host_is_admitted_only_when_it_matches() -> None:
    """A host joining later must have the agreed toolchain."""
    agreement = toolchain.check({"h1": Toolchain("go1.22.4")}, "1.22", allow_drift=False)
    assert toolchain.admit("h3", Toolchain("go1.22.4"), agreement) == ""
    assert "does not match" in toolchain.admit("h3", Toolchain("go1.21.1"), agreement)
