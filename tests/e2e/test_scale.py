"""Many hosts on one head node: a 20-host farm checked and released to, with stub builds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kdist.testing.devfarm import Farm
from kdist.testing.stubs import STUB_PLATFORMS, stub_project
from tests.helpers import kdist

pytestmark = pytest.mark.e2e
HOSTS = 20


@pytest.fixture(scope="module")
def farm20(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """20 hosts whose platforms are detected (uname -m), so a release connects to every one."""
    root = tmp_path_factory.mktemp("farm20")
    with Farm(root, HOSTS, first_address=201, platforms=[], login_rc=False) as farm:
        yield farm


def test_hosts_check_twenty_hosts(farm20: Farm) -> None:
    """Every one of 20 hosts is checked at once and reported ok, one login each."""
    ran = kdist("hosts", "check", "--hosts", farm20.inventory_path, "--json", timeout=300)
    assert ran.code == 0, ran.stderr
    assert [h["status"] for h in ran.json["hosts"]] == ["ok"] * HOSTS
    assert all(farm20.accepted_logins(h.name) == 1 for h in farm20.hosts)


def test_release_of_stub_builds_spreads_over_the_farm(farm20: Farm, tmp_path: Path) -> None:
    """A release of 10 stub platforms on 20 hosts: every slice verified and packed, one login a host."""
    logins = {h.name: farm20.accepted_logins(h.name) for h in farm20.hosts}
    source = stub_project(tmp_path / "stub", STUB_PLATFORMS[:10])
    ran = kdist(
        "release", "--hosts", farm20.inventory_path, "--source", source,
        "--output", tmp_path / "out", "--skip-tests", "--json", timeout=600,
    )  # fmt: skip
    assert ran.code == 0, ran.stderr[-3000:]
    slices = ran.json["slices"]
    assert sorted(s["platform"] for s in slices) == sorted(STUB_PLATFORMS[:10])
    assert len({s["host"] for s in slices}) >= 5  # spread, not queued on a few hosts
    tarballs = list((tmp_path / "out" / "release-tars").glob("*.tar.gz"))
    assert len(tarballs) == 10
    assert all(farm20.accepted_logins(n) - before <= 1 for n, before in logins.items())
