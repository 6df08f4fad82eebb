"""The farm's conventions end to end: ssh_config aliases, Ansible inventories, --limit, preflight.

ProxyJump goes through a farm host whose sshd forwards TCP; the preflight is about the SSH side:
known_hosts files present, host key fingerprints shown, keys recorded by accept-new printed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdist.config.inventory import load_inventory
from kdist.testing.devfarm import Farm
from tests.helpers import kdist, release

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cfarm(tmp_path_factory: pytest.TempPathFactory, gocache: Path) -> Iterator[Farm]:
    """Three hosts; h1 can be the ProxyJump to the others, h2's sshd forwards nothing."""
    root = tmp_path_factory.mktemp("conventions") / "farm"
    with Farm(root, 3, first_address=131, gocache=gocache, no_forwarding=["h2"]) as farm:
        yield farm


def _env_flow(farm: Farm) -> str:
    # The farm's PATH (real Go first) and shared GOCACHE, as a YAML/INI flow mapping.
    return json.dumps(dict(load_inventory(farm.inventory_path).hosts[0].env))


def _ssh_config(farm: Farm, dest: Path, first: str = "", known_hosts: Path | None = None) -> Path:
    """The farm's aliases, `first` written before them (so its values win)."""
    text = farm.ssh_config_text()
    if known_hosts is not None:
        text = text.replace(str(farm.known_hosts_path), str(known_hosts))
    dest.write_text(first + text)
    return dest


def _alias_inventory(farm: Farm, dest: Path) -> Path:
    """A kdist inventory of names only: where and how to connect is all in ssh_config."""
    platforms = "".join(
        f"  {h.name}: {{platforms: [{', '.join(h.platforms)}]}}\n" for h in farm.hosts
    )
    dest.write_text(f"defaults:\n  env: {_env_flow(farm)}\nhosts:\n{platforms}")
    return dest


def _fingerprint(pub: Path) -> str:
    done = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True
    )
    return done.stdout.split()[1]


def test_release_through_ssh_config_aliases_and_a_jump_host(
    cfarm: Farm, generic_source: Path, tmp_path: Path
) -> None:
    """Port, User, IdentityFile, UserKnownHostsFile from ssh_config; h3 reached via ProxyJump h1."""
    config = _ssh_config(cfarm, tmp_path / "ssh_config", "Host h3\n  ProxyJump h1\n")
    inventory = _alias_inventory(cfarm, tmp_path / "aliases.yaml")
    before = {h.name: cfarm.accepted_logins(h.name) for h in cfarm.hosts}
    ran = release(
        generic_source,
        "--ssh-config", config, "--host", "h3",
        hosts=inventory, out=tmp_path / "out", platforms="linux/s390x",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr + ran.stdout[-2000:]
    assert [s["host"] for s in ran.json["slices"]] == ["h3"]
    assert (tmp_path / "out/release-tars/cri-tools-linux-s390x.tar.gz").is_file()
    logins = {h.name: cfarm.accepted_logins(h.name) - before[h.name] for h in cfarm.hosts}
    assert logins["h3"] == 1, logins
    assert logins["h1"] >= 1, logins  # the jump: h3's one connection went through h1


def test_hosts_list_shows_what_ssh_config_resolved(cfarm: Farm, tmp_path: Path) -> None:
    """An unwritten port is not 22: ssh_config's Port, HostName and User are what kdist uses."""
    config = _ssh_config(cfarm, tmp_path / "ssh_config", "Host h3\n  ProxyJump h1\n")
    inventory = _alias_inventory(cfarm, tmp_path / "aliases.yaml")
    ran = kdist("hosts", "list", "--hosts", inventory, "--ssh-config", config, "--json")
    assert ran.code == 0, ran.stderr
    hosts = {h["name"]: h for h in ran.json["hosts"]}
    assert hosts["h2"]["address"] == cfarm.host("h2").address
    assert hosts["h2"]["port"] == cfarm.port != 22
    assert hosts["h2"]["user"] == "root"
    assert hosts["h2"]["identity_files"] == [str(cfarm.identity_path)]
    assert hosts["h2"]["known_hosts"] == [str(cfarm.known_hosts_path)]
    assert [hop["alias"] for hop in hosts["h3"]["jump"]] == ["h1"]
    table = kdist("hosts", "list", "--hosts", inventory, "--ssh-config", config).stdout
    row = next(line.split() for line in table.splitlines() if line.startswith("h3 "))
    assert row == [
        "h3",
        cfarm.host("h3").address,
        str(cfarm.port),
        "root",
        "linux/s390x",
        "1",
        "-",
        "h1",
    ]


def test_ansible_ini_inventory_with_limit(cfarm: Farm, tmp_path: Path) -> None:
    """An INI inventory of aliases: groups become labels, group vars apply, --limit picks hosts."""
    config = _ssh_config(cfarm, tmp_path / "ssh_config")
    inventory = tmp_path / "farm.ini"
    inventory.write_text(
        "[amd]\nh1\n[far]\nh2\nh3 kdist_capacity=3\n"
        "[far:vars]\nkdist_capacity=2\nkdist_platforms=linux/arm64\n"
        f"[all:vars]\nkdist_env={_env_flow(cfarm)}\n"
    )
    listed = kdist("hosts", "list", "--hosts", inventory, "--ssh-config", config, "--json")
    assert listed.code == 0, listed.stderr
    hosts = {h["name"]: h for h in listed.json["hosts"]}
    assert hosts["h2"]["labels"] == ["far"] and hosts["h2"]["capacity"] == 2
    assert hosts["h3"]["capacity"] == 3 and hosts["h3"]["platforms"] == ["linux/arm64"]
    assert hosts["h3"]["port"] == cfarm.port
    ran = kdist(
        "hosts", "check", "--hosts", inventory, "--ssh-config", config,
        "--limit", "far:!h3", "--json",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert [(h["host"], h["status"]) for h in ran.json["hosts"]] == [("h2", "ok")]


def test_ansible_yaml_inventory_with_connection_variables(cfarm: Farm, tmp_path: Path) -> None:
    """ansible_host, ansible_port, ansible_user, ansible_ssh_private_key_file reach the hosts."""
    inventory = tmp_path / "farm.yaml"
    hosts = "".join(f"        {h.name}: {{ansible_host: {h.address}}}\n" for h in cfarm.hosts)
    inventory.write_text(
        "all:\n  children:\n    builders:\n      hosts:\n" + hosts + "      vars:\n"
        f"        ansible_port: {cfarm.port}\n"
        "        ansible_user: root\n"
        f"        ansible_ssh_private_key_file: {cfarm.identity_path}\n"
        f"        kdist_known_hosts: {cfarm.known_hosts_path}\n"
        f"        kdist_env: {_env_flow(cfarm)}\n"
    )
    ran = kdist("hosts", "check", "--hosts", f"ansible:{inventory}", "--ssh-config", "/dev/null")
    assert ran.code == 0, ran.stderr + ran.stdout
    assert sum(" ok " in line for line in ran.stdout.splitlines()) == 3, ran.stdout


def test_missing_known_hosts_is_one_line_before_any_connection(
    cfarm: Farm, generic_source: Path, tmp_path: Path
) -> None:
    """A UserKnownHostsFile that does not exist: exit 2 naming file and hosts, nothing connected."""
    missing = tmp_path / "no_known_hosts"
    config = _ssh_config(cfarm, tmp_path / "ssh_config", known_hosts=missing)
    inventory = _alias_inventory(cfarm, tmp_path / "aliases.yaml")
    before = [cfarm.accepted_logins(h.name) for h in cfarm.hosts]
    for extra in (["-n"], []):
        ran = release(generic_source, "--ssh-config", config, *extra, hosts=inventory, json=False)
        assert ran.code == 2, ran.stderr
        assert ran.stderr.splitlines() == [
            f"kdist: error: {inventory}: known_hosts file {missing} does not exist (needed by "
            "h1, h2, h3); create it, or record keys on first use with --accept-new-host-keys"
        ]
    checked = kdist("hosts", "check", "--hosts", inventory, "--ssh-config", config)
    assert checked.code == 2 and str(missing) in checked.stderr
    assert [cfarm.accepted_logins(h.name) for h in cfarm.hosts] == before


def test_accept_new_host_keys_prints_every_key_it_records(cfarm: Farm, tmp_path: Path) -> None:
    """Each recorded key is printed with host, type and SHA256 fingerprint, and written once."""
    fresh = tmp_path / "fresh" / "known_hosts"
    config = _ssh_config(cfarm, tmp_path / "ssh_config", "Host h3\n  ProxyJump h1\n", fresh)
    inventory = _alias_inventory(cfarm, tmp_path / "aliases.yaml")
    ran = kdist(
        "hosts", "check", "--hosts", inventory, "--ssh-config", config, "--accept-new-host-keys",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr + ran.stdout
    recorded = [line for line in ran.stderr.splitlines() if "recorded host key" in line]
    assert len(recorded) == 3, ran.stderr
    for host in cfarm.hosts:
        fingerprint = _fingerprint(Path(f"{host.host_key}.pub"))
        pattern = f"[{host.address}]:{cfarm.port}"
        assert any(
            f"recorded host key ssh-ed25519 {fingerprint} for {pattern} in {fresh}" in line
            for line in recorded
        ), (host.name, recorded)
    assert len(fresh.read_text().splitlines()) == 3


def test_proxy_command_in_ssh_config_is_run(cfarm: Farm, tmp_path: Path) -> None:
    """A ProxyCommand (here `ssh -W %h:%p h1`) carries the connection, as it would for ssh."""
    config = tmp_path / "ssh_config"
    command = f"ssh -F {config} -o BatchMode=yes -W %h:%p h1"
    _ssh_config(cfarm, config, f"Host h3\n  ProxyCommand {command}\n")
    inventory = _alias_inventory(cfarm, tmp_path / "aliases.yaml")
    before = cfarm.accepted_logins("h1")
    ran = kdist(
        "hosts", "check", "--hosts", inventory, "--ssh-config", config, "--limit", "h3", "--json",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr + ran.stdout
    assert ran.json["hosts"][0]["status"] == "ok"
    assert cfarm.accepted_logins("h1") == before + 1  # the command's own ssh login


def test_jump_host_without_forwarding_is_named(cfarm: Farm, tmp_path: Path) -> None:
    """ProxyJump through a host whose sshd refuses forwarding says which setting is missing."""
    config = _ssh_config(cfarm, tmp_path / "ssh_config", "Host h3\n  ProxyJump h2\n")
    inventory = _alias_inventory(cfarm, tmp_path / "aliases.yaml")
    ran = kdist(
        "hosts", "check", "--hosts", inventory, "--ssh-config", config, "--limit", "h3", "--json",
    )  # fmt: skip
    assert ran.code == 3
    (problem,) = ran.json["hosts"][0]["problems"]
    assert problem.startswith(f"h3 ({cfarm.host('h3').address}:{cfarm.port} via h2)")
    assert "AllowTcpForwarding yes" in problem


def test_changed_host_key_shows_both_fingerprints(tmp_path: Path) -> None:
    """A refused key names the key offered and the known_hosts line it contradicts."""
    with Farm(tmp_path / "farm", 1, first_address=137) as farm:
        host = farm.host("h1")
        old = _fingerprint(Path(f"{host.host_key}.pub"))
        farm.rekey_host("h1")
        new = _fingerprint(Path(f"{host.host_key}.pub"))
        ran = kdist("hosts", "check", "--hosts", farm.inventory_path, "--json")
        assert ran.code == 3
        (problem,) = ran.json["hosts"][0]["problems"]
        assert f"it offered ssh-ed25519 {new}" in problem
        assert f"{farm.known_hosts_path}:1 holds ssh-ed25519 {old}" in problem
        assert "--accept-new-host-keys" in problem
