"""Unit tests for the three inventory formats, what the inventory wrote, and the known_hosts check."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdist.cli.documents import host_row, hosts_document
from kdist.config.inventory import load_inventory, missing_known_hosts, parse_inventory_text
from kdist.errors import InventoryError
from kdist.model import Endpoint, Host, Inventory, Platform


def _fails(text: str) -> str:
    with pytest.raises(InventoryError) as info:
        parse_inventory_text(text, "inv")
    return str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "[web]\nh1 ansible_port=2200\n",
        "# comment\n; another\n[web]\nh1 ansible_port=2200\n",
        "h1 ansible_port=2200\n[web]\nh1\n",
        "all:\n  children:\n    web:\n      hosts:\n        h1: {ansible_port: 2200}\n",
        "web:\n  hosts: {h1: {ansible_port: 2200}}\n",
    ],
)
def test_ansible_inventories_are_recognised_by_shape(text: str) -> None:
    """INI sections, INI host lines first, and YAML groups are Ansible; the host reads the same."""
    (host,) = parse_inventory_text(text, "inv").hosts
    assert (host.name, host.port, host.written) == ("h1", 2200, frozenset({"port"}))


def test_kdist_format_is_still_kdist() -> None:
    """`defaults`/`hosts` at the top with host entries is kdist's own format, errors and all."""
    inv = parse_inventory_text("defaults: {port: 2}\nhosts:\n  h1:\n", "inv")
    assert [(h.name, h.port) for h in inv.hosts] == [("h1", 2)]
    assert "inv: hosts.h1.prot: unknown key" in _fails("hosts:\n  h1: {prot: 1}\n")


def test_ansible_prefix_forces_ansible(tmp_path: Path) -> None:
    """`ansible:FILE` reads a YAML file as Ansible even when its shape looks like kdist's."""
    path = tmp_path / "inv.yaml"
    path.write_text("defaults:\n  hosts: {h1: {ansible_port: 2200}}\n")
    (host,) = load_inventory(Path(f"ansible:{path}")).hosts
    assert (host.name, host.port, host.labels) == ("h1", 2200, ("defaults",))
    with pytest.raises(InventoryError, match=r"defaults\.hosts: unknown key"):
        load_inventory(path)


def test_only_written_connection_keys_are_marked() -> None:
    """`written` holds exactly the connection keys the inventory set (defaults count)."""
    inv = parse_inventory_text(
        "defaults: {user: u}\nhosts:\n  a: {port: 22}\n  b: {identity_file: /k, workdir: /w}\n",
        "inv",
    )
    a, b = inv.hosts
    assert a.written == frozenset({"user", "port"})
    assert b.written == frozenset({"user", "identity_file"})
    assert b.port == 22  # a default, which ssh_config may still change


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[web]\nh1\n[web:vars]\nkdist_capacity=1000\n",
            "inv: host h1: kdist_capacity (from group web): must be 1..256",
        ),
        (
            "[web]\nh1 ansible_port=x\n",
            "inv: host h1: ansible_port (from host h1): must be an integer, not str",
        ),
        (
            "[web]\nh1 kdist_platforms=linux/vax\n",
            "inv: host h1: kdist_platforms (from host h1)[0]: unknown arch 'vax' in 'linux/vax'",
        ),
        (
            "[web]\nh1 kdist_env=\"{'1X': 'y'}\"\n",
            "inv: host h1: kdist_env (from host h1).1X: is not a valid environment variable name",
        ),
        ("[web]\nbad/name\n", "inv: host bad/name: host names are letters, digits"),
        ("[web]\n", "inv: the Ansible inventory lists no host"),
    ],
)
def test_ansible_values_are_checked_like_kdist_ones(text: str, message: str) -> None:
    """kdist's checks apply to Ansible variables; errors name the host and where the value came from."""
    assert _fails(text).startswith(message)


def test_missing_known_hosts_names_files_and_hosts(tmp_path: Path) -> None:
    """One line per missing file, naming every host (and jump host) that needs it."""
    there = tmp_path / "kh"
    there.write_text("")
    gone = tmp_path / "gone"
    jump = Endpoint("j", "10.0.0.9", known_hosts=(gone,))
    hosts = (
        Host("a", "10.0.0.1", known_hosts=(gone,)),
        Host("b", "10.0.0.2", known_hosts=(gone, there)),  # one of several is enough
        Host("c", "10.0.0.3", known_hosts=(there,), jump=(jump,)),
    )
    assert missing_known_hosts(Inventory(hosts, "inv.yaml")) == [
        f"inv.yaml: known_hosts file {gone} does not exist (needed by a, jump host j of c); "
        "create it, or record keys on first use with --accept-new-host-keys"
    ]


def test_hosts_list_row_and_document() -> None:
    """`hosts list` shows the resolved connection, platforms, capacity, labels and jump hosts."""
    host = Host(
        "h3",
        "10.0.0.3",
        port=2222,
        user="ci",
        platforms=(Platform("linux", "s390x"),),
        capacity=2,
        labels=("far", "big"),
        alias="h3.alias",
        jump=(Endpoint("h1", "10.0.0.1", 2201, "root"),),
        written=frozenset({"user"}),
    )
    assert host_row(host) == ["h3", "10.0.0.3", "2222", "ci", "linux/s390x", "2", "far,big", "h1"]
    doc = hosts_document(Inventory((host,), "inv.ini"))
    (listed,) = doc["hosts"]
    assert listed["alias"] == "h3.alias"
    assert listed["jump"] == [{"alias": "h1", "address": "10.0.0.1", "port": 2201, "user": "root"}]
    assert listed["from_inventory"] == ["user"]
