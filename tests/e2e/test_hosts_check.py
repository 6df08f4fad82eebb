"""`kdist hosts check` on a 16-host farm with one host down."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kdist.testing.devfarm import Farm
from tests.helpers import kdist

pytestmark = pytest.mark.e2e


def test_hosts_check_sixteen_hosts_one_down(tmp_path: Path) -> None:
    """All 16 hosts are checked in parallel; a stopped host is unreachable within 10 s, others are ok."""
    with Farm(tmp_path / "farm", 16, first_address=151, platforms=[]) as farm:
        farm.stop_host("h7")
        start = time.monotonic()
        ran = kdist("hosts", "check", "--hosts", farm.inventory_path)
        took = time.monotonic() - start
        assert took < 10, took
        assert ran.code == 3, ran.stderr
        lines = ran.stdout.splitlines()
        rows = {line.split()[0]: line for line in lines[1:] if line.strip()}
        assert len(rows) == 16, ran.stdout
        assert "unreachable" in rows["h7"]
        for name, row in rows.items():
            if name != "h7":
                assert "  ok  " in row and "amd64" in row and "go1." in row, row


def test_hosts_check_json_reports_tools_and_disk(farm: Farm) -> None:
    """--json gives per host: status, detected arch, tool versions and free disk."""
    ran = kdist("hosts", "check", "--hosts", farm.inventory_path, "--json")
    assert ran.code == 0, ran.stderr
    hosts = {h["host"]: h for h in ran.json["hosts"]}
    assert set(hosts) == {"h1", "h2", "h3"}
    for entry in hosts.values():
        assert entry["status"] == "ok"
        assert entry["arch"] == "amd64"
        assert entry["tools"]["go"].startswith("go version")
        assert entry["tools"]["rsync"] and entry["tools"]["make"]
        assert entry["disk_free_kb"] > 0
    assert hosts["h2"]["platforms"] == ["linux/arm64"]


def test_hosts_check_refuses_a_changed_host_key(tmp_path: Path) -> None:
    """A host with a changed key is reported, with the host key named as the reason."""
    with Farm(tmp_path / "farm", 2, first_address=191) as farm:
        farm.rekey_host("h2")
        ran = kdist("hosts", "check", "--hosts", farm.inventory_path, "--json")
        assert ran.code == 3
        hosts = {h["host"]: h for h in ran.json["hosts"]}
        assert hosts["h1"]["status"] == "ok"
        assert hosts["h2"]["status"] == "unreachable"
        assert "host key" in hosts["h2"]["problems"][0]
