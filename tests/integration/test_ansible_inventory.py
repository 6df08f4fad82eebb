"""Ansible inventories against the real thing: `ansible-inventory --list` of ansible-core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from kdist.config import ansible
from kdist.config.inventory import ansible_vars_files, load_inventory
from kdist.config.limit import limit_hosts
from kdist.config.loader import load_yaml_text
from kdist.model import Host

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data" / "ansible"
# Every inventory of the set; vars/ holds two with group_vars/ and host_vars/ beside them.
INVENTORIES = sorted(
    p
    for p in [*DATA.iterdir(), *(DATA / "vars").iterdir()]
    if p.suffix in (".ini", ".yaml", ".yml")
)
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
LIMITS = [
    ("farm.ini", "builders:!arm64"),
    ("farm.ini", "build-amd64-0[1-3]*:&amd64"),
    ("farm.ini", "~pi-[ab]:bastion"),
    ("nested.yaml", "datacenter:!rack2"),
    ("nested.yaml", "datacenter:&gpu:lonely"),
    ("nested.yaml", "r1-*,gpu"),
    ("pending.ini", "everything:!late"),
    ("groups.yml", "edge:&builders"),
]


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        "ANSIBLE_INVENTORY_ENABLED": "ini,yaml",
        "ANSIBLE_NOCOLOR": "1",
    }


@cache
def ansible_list(path: Path, limit: str | None = None) -> dict[str, Any]:
    """`ansible-inventory -i PATH --list [--limit PATTERN]`, parsed."""
    home = Path(tempfile.gettempdir()) / f"kdist-ansible-home-{os.getuid()}"
    argv = [str(ANSIBLE_INVENTORY), "-i", str(path), "--list"]
    argv += ["--limit", limit] if limit else []
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, env=_env(home), timeout=120
    )
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


@pytest.fixture(scope="module", autouse=True)
def _warm_cache() -> None:
    """Ask ansible-inventory every question at once: each start costs about a second."""
    questions = [(p, None) for p in INVENTORIES] + [(DATA / name, lim) for name, lim in LIMITS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda q: ansible_list(*q), questions))


def members(doc: dict[str, Any], group: str) -> set[str]:
    """Every host in `group` and its children, from the --list document."""
    body = doc.get(group, {})
    found = set(body.get("hosts", []))
    for child in body.get("children", []):
        found |= members(doc, child)
    return found


def groups_of(doc: dict[str, Any], host: str) -> set[str]:
    """The groups a host is in, ancestors included, without all and ungrouped."""
    named = {g for g in doc if g not in ("_meta", "all", "ungrouped")}
    return {g for g in named if host in members(doc, g)}


def parse(path: Path) -> tuple[ansible.AnsibleHost, ...]:
    """kdist's reading of an Ansible inventory, before kdist's own keys are taken from it."""
    text, files = path.read_text(), ansible_vars_files(path.parent)
    if path.suffix == ".ini":
        return ansible.parse_ini(text, str(path), files)
    return ansible.parse_yaml(load_yaml_text(text, str(path)), str(path), files)


def test_the_test_set_is_not_trivial() -> None:
    """The set covers INI and YAML, ranges, children three deep and group priorities."""
    suffixes = {p.suffix for p in INVENTORIES}
    assert {".ini", ".yaml"} <= suffixes
    assert len(INVENTORIES) >= 5
    text = "".join(p.read_text() for p in INVENTORIES)
    for feature in ("[01:03]", "[a:c]", ":children]", ":vars]", "ansible_group_priority"):
        assert feature in text, feature
    files = {p.relative_to(DATA / "vars").as_posix() for p in (DATA / "vars").rglob("*")}
    # group_vars as a file without suffix, as a folder (with files Ansible skips), host_vars as
    # JSON, and a name with two files of which Ansible takes the one without suffix
    assert {"group_vars/builders", "group_vars/arm64/notes.txt", "host_vars/b1.json"} <= files
    assert {"host_vars/b2", "host_vars/b2.yml"} <= files


def test_vars_files_take_ansible_precedence() -> None:
    """group_vars beat every group's inline vars; host_vars beat the host's; folders merge in order."""
    doc = ansible_list(DATA / "vars" / "farm.ini")["_meta"]["hostvars"]
    assert doc["b1"]["level"] == "host-b1" and doc["b1"]["ansible_port"] == 2202
    assert doc["pi-a"]["level"] == "arm64-second" and doc["pi-a"]["kdist_capacity"] == 2
    hosts = {h.name: h for h in parse(DATA / "vars" / "farm.ini")}
    assert hosts["pi-a"].origins["level"] == "group_vars/arm64"
    assert hosts["b1"].origins["ansible_port"] == "host_vars/b1"


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.name)
def test_hosts_variables_and_groups_agree_with_ansible(path: Path) -> None:
    """Same hosts, same variables after precedence, same groups as ansible-inventory --list."""
    doc = ansible_list(path)
    found = {host.name: host for host in parse(path)}
    assert set(found) == members(doc, "all")
    hostvars = doc["_meta"]["hostvars"]
    for name, host in found.items():
        assert dict(host.vars) == hostvars.get(name, {}), name
        assert set(host.groups) == groups_of(doc, name), name


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda p: p.name)
def test_kdist_hosts_are_what_ansible_would_connect_to(path: Path) -> None:
    """Address, port, user and key come from ansible_*; kdist_* variables; groups become labels."""
    doc = ansible_list(path)
    hostvars = doc["_meta"]["hostvars"]
    inventory = load_inventory(path)
    assert {h.name for h in inventory.hosts} == members(doc, "all")
    for host in inventory.hosts:
        wanted = hostvars.get(host.name, {})
        assert host.address == wanted.get("ansible_host", host.name)
        assert host.port == int(wanted.get("ansible_port", 22))
        assert ("port" in host.written) == ("ansible_port" in wanted)
        assert host.user == wanted.get("ansible_user")
        key = wanted.get("ansible_ssh_private_key_file")
        assert [p.name for p in host.identity_files] == ([Path(key).name] if key else [])
        assert set(groups_of(doc, host.name)) <= set(host.labels)
        _check_kdist_vars(host, wanted)


def _check_kdist_vars(host: Host, wanted: dict[str, Any]) -> None:
    if "kdist_capacity" in wanted:
        assert host.capacity == int(wanted["kdist_capacity"])
    if "kdist_workdir" in wanted:
        assert host.workdir == wanted["kdist_workdir"]
    if "kdist_env" in wanted:
        assert dict(host.env) == wanted["kdist_env"]
    if "kdist_platforms" in wanted:
        platforms = wanted["kdist_platforms"]
        words = platforms.split(",") if isinstance(platforms, str) else platforms
        assert [str(p) for p in host.platforms or ()] == words
    if "kdist_labels" in wanted:
        assert set(wanted["kdist_labels"]) <= set(host.labels)
    if "kdist_known_hosts" in wanted:
        assert host.known_hosts == (Path(wanted["kdist_known_hosts"]),)


@pytest.mark.parametrize(("name", "pattern"), LIMITS, ids=[p for _, p in LIMITS])
def test_limit_selects_what_ansible_selects(name: str, pattern: str) -> None:
    """--limit PATTERN leaves the hosts ansible-inventory --limit PATTERN leaves."""
    inventory = load_inventory(DATA / name)
    chosen = {host.name for host in limit_hosts(inventory.hosts, pattern)}
    assert chosen == members(ansible_list(DATA / name, pattern), "all")
