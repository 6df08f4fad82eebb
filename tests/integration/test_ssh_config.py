"""kdist's ssh_config resolution against the real thing: `ssh -G` of OpenSSH, for a set of configs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdist.errors import ConfigError
from kdist.model import Endpoint, Host
from kdist.transport import ssh_config_files
from kdist.transport.ssh import resolve_host

pytestmark = pytest.mark.integration

# What ssh -G prints when nothing sets IdentityFile / UserKnownHostsFile: kdist then leaves the
# keys to the SSH client's defaults and looks host keys up in ~/.ssh/known_hosts.
SSH_DEFAULT_KEYS = [
    f"~/.ssh/{name}"
    for name in (
        "id_rsa",
        "id_ecdsa",
        "id_ecdsa_sk",
        "id_ed25519",
        "id_ed25519_sk",
        "id_xmss",
        "id_dsa",
    )
]
SSH_DEFAULT_KNOWN = [
    str(Path(p).expanduser()) for p in ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
]

CONFIGS = {
    "patterns": """
        # first value wins; wildcards, negation, several IdentityFile lines add up
        Host build-*.farm !build-bad.farm
          User farmer
          IdentityFile ~/.ssh/farm_ed25519
          Port 2201
        Host build-1.farm
          Port 2299
          HostName 10.9.0.1
          IdentityFile /etc/kdist/second
        Host *.farm
          User=fallback
          UserKnownHostsFile /etc/kdist/known_hosts "/etc/kdist/with space" /kh/%h-%p-%r
        Host alias-a alias-b
          HostName real.example.com
          ConnectTimeout 7
        Host *
          Port 2022
          IdentityFile ~/.ssh/last
    """,
    "match": """
        # Match host sees HostName; originalhost sees the alias; user sees -l; final re-reads
        Host gw
          HostName 10.20.0.5
        Match host 10.20.*
          Port 2300
        Match originalhost gw user ops
          IdentityFile ~/.ssh/ops_key
        Match !host 10.20.* exec "true"
          ConnectTimeout 3
        Match final host 10.20.0.5
          User finaluser
        Match all
          User nobody-else
    """,
    "include": """
        Include {dir}/conf.d/*.conf
        Host *
          UserKnownHostsFile ~/.ssh/known_%h_%p %d/kh_%n
          ProxyJump none
    """,
    "jumps": """
        Host inner
          HostName 10.30.0.2
          ProxyJump ops@jump1:2202,jump2
        Host jump1
          HostName 10.30.0.1
          Port 2201
          ProxyJump bastion
        Host jump2
          HostName 10.30.0.3
          User j2
        Host bastion
          HostName bastion.example.com
        Host uri
          ProxyJump ssh://me@jumpy:2222
        Host v6
          ProxyJump me@[::1]:2222
    """,
}
INCLUDED = {
    "conf.d/10-first.conf": "Host inc\n  HostName 10.40.0.1\n  Port 2401\n  User first\n",
    "conf.d/20-second.conf": "Host inc\n  Port 2402\n  User second\n  IdentityFile /k/second\n",
}


@dataclass(frozen=True)
class Case:
    """One question to both: the config, the alias, and the options the inventory wrote."""

    config: str
    alias: str
    port: int | None = None
    user: str | None = None


CASES = [
    Case("patterns", "build-1.farm"),
    Case("patterns", "build-2.farm"),
    Case("patterns", "build-bad.farm"),
    Case("patterns", "alias-b"),
    Case("patterns", "elsewhere"),
    Case("patterns", "build-3.farm", port=22, user="root"),
    Case("match", "gw"),
    Case("match", "gw", user="ops"),
    Case("match", "10.20.9.9"),
    Case("match", "other"),
    Case("include", "inc"),
    Case("include", "inc", port=2500),
    Case("jumps", "inner"),
    Case("jumps", "jump1"),
    Case("jumps", "uri"),
    Case("jumps", "v6"),
]


@pytest.fixture(name="configs", scope="module")
def fixture_configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every config of the set written to disk (Include globs need real files)."""
    folder = tmp_path_factory.mktemp("ssh_config")
    for name, text in INCLUDED.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    paths = {}
    for name, text in CONFIGS.items():
        paths[name] = folder / f"{name}.conf"
        body = "\n".join(line.strip() for line in text.format(dir=folder).splitlines())
        paths[name].write_text(body + "\n")
    return paths


def ssh_g(config: Path, case: Case) -> dict[str, list[str]]:
    """`ssh -G` for the case, as a key -> values mapping."""
    argv = ["ssh", "-G", "-F", str(config)]
    argv += ["-p", str(case.port)] if case.port is not None else []
    argv += ["-l", case.user] if case.user is not None else []
    done = subprocess.run(
        [*argv, case.alias], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
    )
    values: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key, []).append(value)
    return values


def openssh_view(values: dict[str, list[str]]) -> dict[str, object]:
    """The keys kdist resolves, from ssh -G, with OpenSSH's defaults spelled as kdist's."""
    keys = values.get("identityfile", [])
    known = values["userknownhostsfile"][0]  # ssh -G joins the files with spaces
    timeout = values["connecttimeout"][0]
    return {
        "address": values["hostname"][0],
        "port": int(values["port"][0]),
        "user": values["user"][0],
        "identity_files": []
        if keys == SSH_DEFAULT_KEYS
        else [str(Path(k).expanduser()) for k in keys],
        "known_hosts": SSH_DEFAULT_KNOWN[0] if known == " ".join(SSH_DEFAULT_KNOWN) else known,
        "connect_timeout": None if timeout == "none" else float(timeout),
    }


def kdist_view(host: Host) -> dict[str, object]:
    """The same keys from kdist's resolved host."""
    return {
        "address": host.address,
        "port": host.port,
        "user": host.user,
        "identity_files": [str(p) for p in host.identity_files],
        "known_hosts": " ".join(map(str, host.known_hosts)),
        "connect_timeout": host.connect_timeout,
    }


def _written(case: Case) -> Host:
    written = {k for k, v in (("port", case.port), ("user", case.user)) if v is not None}
    return Host(
        name="h",
        address=case.alias,
        port=case.port or 22,
        user=case.user,
        written=frozenset(written),
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.config}-{c.alias}-{c.port}-{c.user}")
def test_resolution_matches_ssh_g(configs: dict[str, Path], case: Case) -> None:
    """HostName, Port, User, IdentityFile, UserKnownHostsFile and ConnectTimeout are what ssh -G says."""
    config = configs[case.config]
    resolved = resolve_host(_written(case), [config])
    assert kdist_view(resolved) == openssh_view(ssh_g(config, case))


def test_proxy_jump_chain_is_what_ssh_would_walk(configs: dict[str, Path]) -> None:
    """ProxyJump a,b: a's own ProxyJump comes first, every hop resolved as ssh -G resolves it."""
    config = configs["jumps"]
    resolved = resolve_host(_written(Case("jumps", "inner")), [config])
    assert ssh_g(config, Case("jumps", "inner"))["proxyjump"] == ["ops@jump1:2202,jump2"]
    assert [hop.alias for hop in resolved.jump] == ["bastion", "jump1", "jump2"]
    hops = [Case("jumps", "bastion"), Case("jumps", "jump1", 2202, "ops"), Case("jumps", "jump2")]
    for hop, case in zip(resolved.jump, hops, strict=True):
        assert kdist_view(_as_host(hop)) == openssh_view(ssh_g(config, case))
    uri = resolve_host(_written(Case("jumps", "uri")), [config]).jump
    assert [(hop.alias, hop.port, hop.user) for hop in uri] == [("jumpy", 2222, "me")]
    v6 = resolve_host(_written(Case("jumps", "v6")), [config]).jump
    assert [(hop.address, hop.port, hop.user) for hop in v6] == [("::1", 2222, "me")]


def _as_host(hop: Endpoint) -> Host:
    """A host whose endpoint fields are those of one jump hop."""
    return Host(
        "h", hop.address, hop.port, hop.user, identity_files=hop.identity_files,
        known_hosts=hop.known_hosts, connect_timeout=hop.connect_timeout,
    )  # fmt: skip


def test_inventory_values_beat_ssh_config_only_when_written(configs: dict[str, Path]) -> None:
    """An unwritten port 22 is a default: ssh_config's Port wins; a written one wins over it."""
    config = configs["patterns"]
    unwritten = resolve_host(Host("h", "build-2.farm"), [config])
    written = resolve_host(
        Host("h", "build-2.farm", port=22, written=frozenset({"port"})), [config]
    )
    assert (unwritten.port, written.port) == (2201, 22)
    key = Path("/my/key")
    own = Host("h", "build-2.farm", identity_files=(key,), written=frozenset({"identity_file"}))
    assert resolve_host(own, [config]).identity_files == (key,)


def test_ssh_config_errors_name_the_host_and_the_line(tmp_path: Path) -> None:
    """A broken ssh_config, a loop of ProxyJumps or `UserKnownHostsFile none` are config errors."""
    bad = tmp_path / "bad.conf"
    bad.write_text("Host *\n  Port notanumber\n")
    with pytest.raises(ConfigError, match=rf"host h: ssh_config: {bad} line 2: Invalid Port"):
        resolve_host(Host("h", "x"), [bad])
    loop = tmp_path / "loop.conf"
    loop.write_text("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    with pytest.raises(ConfigError, match="host h: ProxyJump goes through more than 8 hosts"):
        resolve_host(Host("h", "a"), [loop])
    none = tmp_path / "none.conf"
    none.write_text("Host *\n  UserKnownHostsFile none\n")
    with pytest.raises(ConfigError, match="UserKnownHostsFile none"):
        resolve_host(Host("h", "x"), [none])
    with pytest.raises(ConfigError, match=r"--ssh-config .*: no such file"):
        ssh_config_files(tmp_path / "missing")
