"""Unit tests for kdist.config.inventory and kdist.config.loader: defaults, paths, and exact error positions."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kdist.config.inventory import (
    DEFAULT_KEYS,
    HOST_KEYS,
    load_inventory,
    parse_inventory,
    parse_inventory_text,
)
from kdist.config.loader import load_yaml_text
from kdist.errors import InventoryError
from kdist.model import DEFAULT_WORKDIR, Host, Inventory, Platform

GOOD = """\
# A realistic inventory: defaults plus three hosts that override different keys.
defaults:
  user: builder
  port: 2222
  identity_file: keys/id_ed25519
  known_hosts: ~/.ssh/known_hosts
  workdir: /srv/kdist/
  capacity: 2
  env: {PATH: "/usr/local/go/bin:/usr/bin:/bin", GOFLAGS: "-mod=vendor"}
hosts:
  arm64-1:
    address: 10.0.0.21
    platforms: [linux/arm64, linux/arm]
    capacity: 4
    labels: [fast, big]
  amd64-1:
    port: 22
    user: other
    identity_file: /etc/kdist/key
    env: {PATH: "/opt/go/bin:/usr/bin", GOMAXPROCS: "16"}
  bare:
"""


@pytest.fixture(name="home")
def fixture_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $HOME so `~` expansion is predictable."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture(name="good")
def fixture_good(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Inventory:
    """The GOOD inventory loaded from a file, with the working directory elsewhere."""
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "inventory.yaml"
    path.write_text(GOOD, encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return load_inventory(path)


def _host(inventory: Inventory, name: str) -> Host:
    host = inventory.host(name)
    assert host is not None, name
    return host


def _fails(text: str) -> str:
    with pytest.raises(InventoryError) as info:
        parse_inventory_text(text, "inventory.yaml")
    return str(info.value)


def test_good_inventory_keeps_file_order_and_source(good: Inventory, tmp_path: Path) -> None:
    """Hosts come back in file order and the inventory remembers its file."""
    assert [h.name for h in good.hosts] == ["arm64-1", "amd64-1", "bare"]
    assert good.source == str(tmp_path / "conf" / "inventory.yaml")
    assert good.host("nope") is None


def test_defaults_apply_unless_the_host_overrides(good: Inventory) -> None:
    """Every defaults key reaches a host that does not set it; host keys win."""
    arm = _host(good, "arm64-1")
    assert (arm.user, arm.port, arm.workdir, arm.capacity) == ("builder", 2222, "/srv/kdist", 4)
    amd = _host(good, "amd64-1")
    assert (amd.user, amd.port, amd.capacity) == ("other", 22, 2)
    assert amd.identity_files == (Path("/etc/kdist/key"),)


def test_host_without_entry_gets_every_default(good: Inventory, home: Path) -> None:
    """A host written as `name:` with no body is the defaults plus its name as address."""
    bare = _host(good, "bare")
    assert bare.address == "bare"
    assert (bare.user, bare.port, bare.capacity, bare.workdir) == ("builder", 2222, 2, "/srv/kdist")
    assert bare.known_hosts == (home / ".ssh" / "known_hosts",)
    assert bare.platforms is None
    assert bare.labels == ()
    assert bare.local is False


def test_address_defaults_to_the_host_name(good: Inventory) -> None:
    """Without `address`, the host name is the address (an ssh_config alias works)."""
    assert _host(good, "amd64-1").address == "amd64-1"
    assert _host(good, "arm64-1").address == "10.0.0.21"


def test_env_merges_host_keys_over_default_keys(good: Inventory) -> None:
    """Host env overrides the same keys of defaults.env and keeps the other default keys."""
    assert dict(_host(good, "amd64-1").env) == {
        "PATH": "/opt/go/bin:/usr/bin",
        "GOFLAGS": "-mod=vendor",
        "GOMAXPROCS": "16",
    }
    assert dict(_host(good, "arm64-1").env) == {
        "PATH": "/usr/local/go/bin:/usr/bin:/bin",
        "GOFLAGS": "-mod=vendor",
    }


def test_platforms_and_labels_are_parsed(good: Inventory) -> None:
    """Declared platforms become Platform records in order; labels a tuple of strings."""
    arm = _host(good, "arm64-1")
    assert arm.platforms == (Platform("linux", "arm64"), Platform("linux", "arm"))
    assert arm.labels == ("fast", "big")
    assert _host(good, "amd64-1").platforms is None


def test_relative_identity_file_is_resolved_against_the_inventory_folder(
    good: Inventory, tmp_path: Path
) -> None:
    """A relative identity_file is taken from the inventory's folder, not the working directory."""
    expected = (tmp_path / "conf" / "keys" / "id_ed25519").resolve()
    assert _host(good, "arm64-1").identity_files == (expected,)
    assert _host(good, "bare").identity_files == (expected,)


def test_tilde_is_expanded_in_paths(good: Inventory, home: Path) -> None:
    """`~/` in known_hosts and identity_file means the user's home folder."""
    assert _host(good, "arm64-1").known_hosts == (home / ".ssh" / "known_hosts",)
    inv = parse_inventory_text("hosts: {h1: {identity_file: ~/k/id}}\n", "inv.yaml")
    assert inv.hosts[0].identity_files == (home / "k" / "id",)


def test_relative_known_hosts_in_text_uses_the_given_base(tmp_path: Path) -> None:
    """parse_inventory_text resolves relative paths against `base` when given."""
    inv = parse_inventory_text("hosts: {h1: {known_hosts: kh}}\n", "inv.yaml", base=tmp_path)
    assert inv.hosts[0].known_hosts == ((tmp_path / "kh").resolve(),)


def test_minimal_inventory_uses_builtin_defaults() -> None:
    """With no defaults section, port 22, capacity 1, the default workdir and no user apply."""
    inv = parse_inventory_text("hosts:\n  h1: {}\n", "inventory.yaml")
    assert inv.hosts == (Host(name="h1", address="h1"),)
    assert inv.hosts[0].workdir == DEFAULT_WORKDIR
    assert inv.source == "inventory.yaml"


def test_workdir_root_and_trailing_slashes_are_normalised() -> None:
    """A trailing '/' is dropped from the workdir, but '/' itself stays '/'."""
    inv = parse_inventory_text(
        "hosts:\n  a: {workdir: /x/y//}\n  b: {workdir: /}\n", "inventory.yaml"
    )
    assert [h.workdir for h in inv.hosts] == ["/x/y", "/"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "hosts:\n  arm64-1: {port: 70000}\n",
            "inventory.yaml: hosts.arm64-1.port: must be 1..65535",
        ),
        (
            "defaults: {port: 0}\nhosts:\n  h1: {}\n",
            "inventory.yaml: defaults.port: must be 1..65535",
        ),
        (
            "hosts:\n  h1: {}\nextra: 1\n",
            "inventory.yaml: extra: unknown key (allowed: defaults, hosts)",
        ),
        (
            "defaults: {address: x}\nhosts:\n  h1: {}\n",
            "inventory.yaml: defaults.address: unknown key (allowed: capacity, docker_socket, "
            "env, identity_file, known_hosts, port, user, workdir)",
        ),
        (
            "hosts:\n  h1: {platform: [linux/amd64]}\n",
            "inventory.yaml: hosts.h1.platform: unknown key (allowed: address, capacity, "
            "docker_socket, env, identity_file, known_hosts, labels, platforms, port, user, "
            "workdir)",
        ),
        (
            'hosts:\n  h1: {port: "22"}\n',
            "inventory.yaml: hosts.h1.port: must be an integer, not str",
        ),
        (
            "hosts:\n  h1: {capacity: true}\n",
            "inventory.yaml: hosts.h1.capacity: must be an integer, not bool",
        ),
        (
            "hosts:\n  h1: {capacity: 0}\n",
            "inventory.yaml: hosts.h1.capacity: must be 1..256",
        ),
        (
            "hosts:\n  h1: {platforms: linux/amd64}\n",
            "inventory.yaml: hosts.h1.platforms: must be a list, not str",
        ),
        (
            "hosts:\n  h1: {env: {GOMAXPROCS: 16}}\n",
            "inventory.yaml: hosts.h1.env.GOMAXPROCS: must be a string, not int",
        ),
        (
            "defaults: {env: {GOMAXPROCS: 16}}\nhosts:\n  h1: {}\n",
            "inventory.yaml: defaults.env.GOMAXPROCS: must be a string, not int",
        ),
        (
            "hosts:\n  h1: {env: {1X: a}}\n",
            "inventory.yaml: hosts.h1.env.1X: is not a valid environment variable name",
        ),
        (
            "hosts:\n  h1: {platforms: [linux/amd64, linux/amd46]}\n",
            "inventory.yaml: hosts.h1.platforms[1]: unknown arch 'amd46' in 'linux/amd46'",
        ),
        (
            "hosts:\n  h1: {platforms: [linux/amd64, linux/amd64]}\n",
            "inventory.yaml: hosts.h1.platforms[1]: duplicate platform 'linux/amd64'",
        ),
        (
            "hosts:\n  h1: {workdir: var/tmp}\n",
            "inventory.yaml: hosts.h1.workdir: must be an absolute path on the build host, "
            "not 'var/tmp'",
        ),
        (
            "defaults: {workdir: relative}\nhosts:\n  h1: {}\n",
            "inventory.yaml: defaults.workdir: must be an absolute path on the build host, "
            "not 'relative'",
        ),
        (
            "hosts:\n  h1: {workdir: /var/tmp/../etc}\n",
            "inventory.yaml: hosts.h1.workdir: must not contain '..'",
        ),
        (
            "hosts:\n  h1: {address: -oProxyCommand=id}\n",
            "inventory.yaml: hosts.h1.address: '-oProxyCommand=id' is not a valid host name "
            "or address",
        ),
        (
            "hosts:\n  h1: {user: 'root;id'}\n",
            "inventory.yaml: hosts.h1.user: 'root;id' is not a valid user name",
        ),
        (
            "hosts:\n  -bad: {}\n",
            "inventory.yaml: hosts.-bad: host names are letters, digits, '.', '_' and '-' "
            "(at most 63)",
        ),
        (
            "hosts:\n  h1: {labels: [ok, '']}\n",
            "inventory.yaml: hosts.h1.labels[1]: must not be empty",
        ),
        (
            "hosts:\n  h1: [a]\n",
            "inventory.yaml: hosts.h1: must be a mapping, not list",
        ),
        ("hosts: {}\n", "inventory.yaml: hosts: must list at least one host"),
        ("defaults: {port: 22}\n", "inventory.yaml: hosts: must list at least one host"),
        ("hosts:\n", "inventory.yaml: hosts: must be a mapping, not null"),
        ("", "inventory.yaml: must be a mapping, not null"),
        ("- h1\n", "inventory.yaml: must be a mapping, not list"),
        ("hosts:\n  1: {}\n", "inventory.yaml: hosts: keys must be strings, not int 1"),
    ],
)
def test_errors_name_the_file_and_the_key_path(text: str, message: str) -> None:
    """Each validation error is an InventoryError whose text is exactly `file: key.path: why`."""
    assert _fails(text) == message


def test_duplicate_yaml_keys_are_refused_with_line_and_column() -> None:
    """A host listed twice is an error at the second occurrence, not last-one-wins."""
    assert _fails("hosts:\n  h1: {}\n  h1: {port: 2}\n") == (
        "inventory.yaml:3:3: duplicate key 'h1'"
    )


def test_duplicate_keys_inside_a_host_are_refused() -> None:
    """Duplicate keys are refused at every depth."""
    assert _fails("hosts:\n  h1:\n    port: 22\n    port: 23\n") == (
        "inventory.yaml:4:5: duplicate key 'port'"
    )


def test_tab_indentation_is_explained() -> None:
    """Tabs used for indentation give a message that says so, with the line."""
    message = _fails("hosts:\n\th1: {}\n")
    assert message.startswith("inventory.yaml:2:")
    assert "tab" in message


def test_python_object_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    """`!!python/object/apply` is not constructed: nothing is executed, an error is raised."""
    marker = tmp_path / "pwned"
    text = f"hosts:\n  h1: !!python/object/apply:os.system ['touch {marker}']\n"
    message = _fails(text)
    assert message.startswith("inventory.yaml:2:")
    assert "python/object" in message
    assert not marker.exists()


def test_python_object_tag_on_top_level_is_refused() -> None:
    """`!!python/object:` on any node is an InventoryError, not an object."""
    assert "could not determine a constructor" in _fails("hosts: !!python/object:os.Path {}\n")


def test_missing_file_error_names_the_file(tmp_path: Path) -> None:
    """A missing inventory is an InventoryError naming the path."""
    path = tmp_path / "missing.yaml"
    with pytest.raises(InventoryError, match=re.escape(f"{path}: cannot read")):
        load_inventory(path)


def test_directory_instead_of_file_names_the_file(tmp_path: Path) -> None:
    """A folder passed as inventory is reported as unreadable, by name."""
    with pytest.raises(InventoryError, match=re.escape(f"{tmp_path}: cannot read")):
        load_inventory(tmp_path)


def test_non_utf8_file_names_the_file(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 make an InventoryError naming the file."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"hosts:\n  h\xe9: {}\n")
    with pytest.raises(InventoryError, match=re.escape(f"{path}: cannot read")):
        load_inventory(path)


def test_yaml_error_in_a_file_names_the_file_and_line(tmp_path: Path) -> None:
    """A syntax error in a loaded file names the file path and the line."""
    path = tmp_path / "inventory.yaml"
    path.write_text("hosts:\n  h1: {port: 22\n", encoding="utf-8")
    with pytest.raises(InventoryError, match=re.escape(f"{path}:")) as info:
        load_inventory(path)
    assert re.match(re.escape(str(path)) + r":\d+:\d+: ", str(info.value))


def test_validation_error_in_a_file_names_the_file(tmp_path: Path) -> None:
    """Key-path errors from load_inventory carry the real file path."""
    path = tmp_path / "inventory.yaml"
    path.write_text("hosts:\n  arm64-1: {port: 70000}\n", encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert str(info.value) == f"{path}: hosts.arm64-1.port: must be 1..65535"


def test_loader_keeps_plain_yaml_types() -> None:
    """The strict loader still reads ordinary YAML: maps, lists, ints, strings and null."""
    assert load_yaml_text("a: [1, x, null]\nb: {c: true}\n", "f") == {
        "a": [1, "x", None],
        "b": {"c": True},
    }


def test_env_name_with_trailing_newline_is_refused() -> None:
    """An env name with a trailing newline is not a valid variable name."""
    assert _fails('hosts:\n  h1: {env: {"FOO\\n": x}}\n') == (
        "inventory.yaml: hosts.h1.env.FOO\n: is not a valid environment variable name"
    )


def test_host_name_with_trailing_newline_is_refused_as_a_host_name() -> None:
    """A host name ending in a newline is refused at hosts.<name>, not at defaults.address."""
    assert _fails('hosts:\n  "h1\\n": {}\n').startswith(
        "inventory.yaml: hosts.h1\n: host names are"
    )


# --- Inputs that once leaked non-inventory exceptions. ---------


def test_impossible_yaml_date_is_an_inventory_error() -> None:
    """An implicit YAML timestamp that is not a real date is an InventoryError."""
    _fails("hosts:\n  h1: {labels: [2001-13-01]}\n")


def test_tilde_of_an_unknown_user_is_an_inventory_error() -> None:
    """`~nosuchuser/key` is an InventoryError at hosts.h1.identity_file, not a RuntimeError."""
    assert "hosts.h1.identity_file" in _fails(
        "hosts:\n  h1: {identity_file: '~kdist-no-such-user/key'}\n"
    )


def test_deeply_nested_yaml_is_an_inventory_error() -> None:
    """A pathologically nested document is an InventoryError, not a RecursionError."""
    _fails("[" * 1000)


# --- Property tests: malformed input is an InventoryError, never any other exception. ---------

_TRICKY = (
    "linux/amd64",
    "linux/amd46",
    "windows/arm64",
    "/var/tmp/kdist",
    "/a/../b",
    "relative",
    "-oProxyCommand=x",
    "~",
    "~/k",
    "h1",
    "10.0.0.1",
    "[::1]",
    "a b",
    "",
    " ",
    "x\n",
    "\x00",
)
_strings = st.text(max_size=16) | st.sampled_from(_TRICKY)
_keys = _strings | st.sampled_from((*HOST_KEYS, "defaults", "hosts"))
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-2, max_value=70000)
    | st.floats()
    | _strings
)
_json = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_keys, kids, max_size=4),
    max_leaves=20,
)
_value = (
    _json
    | st.lists(st.sampled_from(_TRICKY), max_size=3)
    | st.dictionaries(st.sampled_from(("PATH", "GOFLAGS", "1X", "A-B", "")), _json, max_size=2)
)
_host_entry = st.none() | st.dictionaries(
    st.sampled_from((*HOST_KEYS, "bogus")), _value, max_size=6
)
_inventory_like = st.fixed_dictionaries(
    {},
    optional={
        "defaults": st.none() | st.dictionaries(st.sampled_from(DEFAULT_KEYS), _value, max_size=5),
        "hosts": st.dictionaries(
            st.sampled_from(("h1", "arm64-1", "-bad", "a" * 64, "x y")) | _strings,
            _host_entry,
            max_size=3,
        ),
        "extra": _json,
    },
)
_documents = _json | _inventory_like
_YAML_CHARS = " \t\n:-?[]{},#&*!|>'\"%@`~.0123456789abhostdefaultsplatformsport/\\"
_texts = (
    st.text(max_size=200)
    | st.text(alphabet=_YAML_CHARS, max_size=200)
    | _documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True))
)


def _check_outcome(call: Callable[[], Inventory]) -> Inventory | None:
    try:
        inventory = call()
    except InventoryError:
        return None
    assert isinstance(inventory, Inventory)
    assert inventory.hosts
    for host in inventory.hosts:
        assert 1 <= host.port <= 65535
        assert 1 <= host.capacity <= 256
        assert host.workdir.startswith("/")
        assert not host.address.startswith("-")
    return inventory


@settings(max_examples=300, deadline=None, database=None)
@given(doc=_documents)
def test_parse_inventory_raises_only_inventory_error(doc: object) -> None:
    """Any JSON-like document yields a sane Inventory or an InventoryError, nothing else."""
    _check_outcome(lambda: parse_inventory(doc, "inventory.yaml", Path("/kdist-base")))


@settings(max_examples=300, deadline=None, database=None)
@given(text=_texts)
def test_parse_inventory_text_raises_only_inventory_error(text: str) -> None:
    """Any text yields a sane Inventory or an InventoryError, nothing else."""
    _check_outcome(lambda: parse_inventory_text(text, "inventory.yaml", Path("/kdist-base")))


def test_docker_socket_defaults_and_per_host_override() -> None:
    """docker_socket defaults to /var/run/docker.sock; defaults and hosts may set their own."""
    inv = parse_inventory_text(
        "defaults: {docker_socket: /run/user/1000/docker.sock}\n"
        "hosts:\n  a: {}\n  b: {docker_socket: /var/run/docker.sock}\n"
    )
    assert [h.docker_socket for h in inv.hosts] == ["/run/user/1000/docker.sock", "/var/run/docker.sock"]
    assert parse_inventory_text("hosts: {c: {}}").hosts[0].docker_socket == "/var/run/docker.sock"


def test_relative_docker_socket_is_refused() -> None:
    """A docker_socket must be an absolute path on the host."""
    with pytest.raises(InventoryError, match=r"hosts\.a\.docker_socket: must be an absolute path"):
        parse_inventory_text("hosts:\n  a: {docker_socket: docker.sock}\n")
