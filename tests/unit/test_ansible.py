"""Unit tests for kdist.config.ansible: ranges, INI values, precedence, and errors that say where."""

from __future__ import annotations

import pytest

from kdist.config import ansible
from kdist.config.ansible import AnsibleHost, expand_host_pattern, parse_ini, parse_value
from kdist.errors import InventoryError


def _hosts(found: tuple[AnsibleHost, ...]) -> dict[str, AnsibleHost]:
    return {host.name: host for host in found}


def _ini_fails(text: str) -> str:
    with pytest.raises(InventoryError) as info:
        parse_ini(text, "inv.ini")
    return str(info.value)


def _yaml_fails(data: object) -> str:
    with pytest.raises(InventoryError) as info:
        ansible.parse_yaml(data, "inv.yaml")
    return str(info.value)


@pytest.mark.parametrize(
    ("pattern", "names", "port"),
    [
        ("web", ["web"], None),
        ("web:2222", ["web"], 2222),
        ("web[01:03]", ["web01", "web02", "web03"], None),
        ("web[1:10:4].lan:22", ["web1.lan", "web5.lan", "web9.lan"], 22),
        ("db-[a:c]", ["db-a", "db-b", "db-c"], None),
        ("r[1:2]n[a:b]", ["r1na", "r1nb", "r2na", "r2nb"], None),
        ("[::1]:2200", ["::1"], 2200),
        ("[:2]x", ["0x", "1x", "2x"], None),
    ],
)
def test_host_patterns_expand_like_ansible(
    pattern: str, names: list[str], port: int | None
) -> None:
    """Numeric, zero-padded, stepped, alphabetic and nested ranges, with or without a port."""
    assert expand_host_pattern(pattern) == (names, port)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("web[1:]", "needs an end"),
        ("web[01:100]", "same width"),
        ("web[c:a]", "begin must not come after end"),
        ("web[1:3:0]", "step"),
        ("web[1]", "begin:end"),
        ("web[1:2", "unclosed"),
    ],
)
def test_bad_ranges_are_refused(pattern: str, problem: str) -> None:
    """A malformed range names what is wrong with it."""
    with pytest.raises(ValueError, match=problem):
        expand_host_pattern(pattern)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2222", 2222),
        ("True", True),
        ("yes", "yes"),
        ("['a', 'b']", ["a", "b"]),
        ("('a',)", ["a"]),
        ("{'k': (1, 2)}", {"k": [1, 2]}),
        ("linux/amd64", "linux/amd64"),
        ("1+2j", "(1+2j)"),
        ("...", "..."),
        ("b'raw'", "raw"),
        ("'quoted'", "quoted"),
        ("None", None),
    ],
)
def test_ini_values_are_python_literals_or_strings(text: str, value: object) -> None:
    """INI values go through literal_eval as in ansible-core; anything else stays a string."""
    assert parse_value(text) == value


def test_ini_sections_children_and_vars() -> None:
    """Hosts before any section are ungrouped; children inherit group vars; host vars win."""
    hosts = _hosts(
        parse_ini(
            "lone ansible_port=2200\n"
            "[web]\nw1 kdist_capacity=4  # a comment\nw2:2022\n"
            "[web:vars]\nkdist_capacity=2\nansible_user=www\n"
            "[prod:children]\nweb\n"
            "[prod:vars]\nansible_user=prod\nenv=production\n",
            "inv.ini",
        )
    )
    assert hosts["lone"].groups == ()
    assert hosts["lone"].vars == {"ansible_port": 2200}
    assert hosts["w1"].groups == ("web", "prod")
    assert hosts["w1"].vars == {
        "kdist_capacity": 4,
        "ansible_user": "www",
        "env": "production",
    }
    assert hosts["w2"].vars["ansible_port"] == 2022
    assert hosts["w1"].origins["ansible_user"] == "group web"
    assert hosts["w1"].origins["kdist_capacity"] == "host w1"


def test_groups_of_equal_depth_rank_by_priority_then_name() -> None:
    """Among sibling groups the later name wins, unless ansible_group_priority says otherwise."""
    data = {
        "a": {"hosts": {"h": None}, "vars": {"x": "a", "y": "a"}},
        "b": {"hosts": {"h": None}, "vars": {"x": "b", "y": "b", "ansible_group_priority": 0}},
    }
    host = ansible.parse_yaml(data, "inv.yaml")[0]
    assert host.vars == {"x": "a", "y": "a"}
    data["b"]["vars"]["ansible_group_priority"] = 1  # type: ignore[index]
    assert ansible.parse_yaml(data, "inv.yaml")[0].vars["x"] == "b"


def test_the_deepest_group_wins_whatever_the_order() -> None:
    """A child group's variable beats its parent's, even when the parent is written later."""
    data = {
        "all": {"children": {"leaf": {"hosts": {"h": None}, "vars": {"x": "leaf"}}}},
        "mid": {"children": {"leaf": None}, "vars": {"x": "mid"}},
    }
    host = ansible.parse_yaml(data, "inv.yaml")[0]
    assert host.vars["x"] == "leaf"
    assert set(host.groups) == {"leaf", "mid"}


def test_port_only_counts_where_a_host_first_appears() -> None:
    """As in Ansible, `h:2222` on a second mention of h does not change its port."""
    hosts = _hosts(parse_ini("[a]\nh:2200\n[b]\nh:2300\n", "inv.ini"))
    assert hosts["h"].vars["ansible_port"] == 2200


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[web]\nh1 novalue\n", "inv.ini:2: [web]: expected key=value"),
        ("[web:children]\nmissing\n", "inv.ini:2: [web:children]: includes group 'missing'"),
        ("[ghost:vars]\nx=1\n", "inv.ini:1: [ghost:vars]: group 'ghost' is not declared"),
        ("[web:bogus]\n", "inv.ini:1: [web:bogus]: unknown section type 'bogus'"),
        ("[web]\nh1\n[web:vars]\nno equals sign\n", "inv.ini:4: [web:vars]: expected key=value"),
        ("[web group]\n", "inv.ini:1: [[web group]]: not a valid section header"),
        ("[web]\nh[1:]\n", "inv.ini:2: [web]: bad host line"),
        ("[web]\nh1 x='unclosed\n", "inv.ini:2: [web]: bad host line"),
        (
            "[a:children]\nb\n[b:children]\na\n",
            "inv.ini: group b: adding a as a child makes a loop",
        ),
    ],
)
def test_ini_errors_name_the_file_line_and_section(text: str, where: str) -> None:
    """Every INI error starts with file:line and the section it was in."""
    assert _ini_fails(text).startswith(where)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ([1, 2], "inv.yaml: top level: an Ansible YAML inventory is a mapping of groups"),
        ({"plugin": "aws_ec2"}, "inv.yaml: plugin: inventory plugin configurations"),
        ({"web": ["h1"]}, "inv.yaml: group web: must be a mapping"),
        ({"web": {"host": {"h1": None}}}, "inv.yaml: group web: host: unknown key"),
        ({"web": {"hosts": ["h1"]}}, "inv.yaml: group web: hosts: must be a mapping"),
        ({"web": {"hosts": {1: None}}}, "inv.yaml: group web: hosts: host 1 must be a string"),
        ({"web": {"hosts": {"h1": "x"}}}, "inv.yaml: group web: hosts: h1: host variables"),
        ({"web": {"hosts": {"h[2:1]": None}}}, "inv.yaml: group web: hosts: h[2:1]:"),
        ({"web": {"vars": {"ansible_group_priority": "high"}}}, "inv.yaml: group web: ansible_"),
        ({"web": {"children": {"web": None}}}, "inv.yaml: group web: adding web as a child"),
        ({"web": {"hosts": {"h": {3: 1}}}}, "inv.yaml: host h: variable names must be strings"),
    ],
)
def test_yaml_errors_name_the_file_and_group(data: object, where: str) -> None:
    """Every YAML error names the file and the group (or host) it is about."""
    assert _yaml_fails(data).startswith(where)


def test_kdist_entries_map_connection_and_kdist_variables() -> None:
    """ansible_* fill address/port/user/key, kdist_* their keys, and groups become labels."""
    found = parse_ini(
        "[arm]\npi ansible_host=10.0.0.9 ansible_port='2222' kdist_platforms=linux/arm64,linux/arm"
        " kdist_labels=\"['rack2']\" other=ignored\n"
        "[arm:vars]\nansible_user=pi\nansible_ssh_private_key_file=~/k\nkdist_capacity='3'\n",
        "inv.ini",
    )
    keys = ("address", "port", "user", "identity_file", "platforms", "labels", "capacity")
    (entry,) = ansible.kdist_entries(found, keys, "inv.ini")
    assert entry.values == {
        "address": "10.0.0.9",
        "port": 2222,
        "user": "pi",
        "identity_file": "~/k",
        "platforms": ["linux/arm64", "linux/arm"],
        "labels": ["arm", "rack2"],
        "capacity": 3,
    }
    assert entry.written["user"] == "ansible_user (from group arm)"
    assert entry.written["port"] == "ansible_port (from host pi)"


def test_unknown_kdist_variable_names_host_group_and_known_ones() -> None:
    """A misspelt kdist_ variable is an error naming the host, the group that set it and the right names."""
    found = parse_ini("[web]\nh1\n[web:vars]\nkdist_capcity=2\n", "inv.ini")
    with pytest.raises(InventoryError) as info:
        ansible.kdist_entries(found, ("capacity", "port"), "inv.ini")
    assert str(info.value) == (
        "inv.ini: host h1: kdist_capcity (from group web): unknown kdist variable "
        "(known: kdist_capacity)"
    )
