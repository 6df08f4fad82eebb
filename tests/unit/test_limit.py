"""Unit tests for kdist.config.limit: Ansible's pattern forms over host names and labels."""

from __future__ import annotations

import pytest

from kdist.config.limit import limit_hosts, split_pattern
from kdist.errors import ConfigError
from kdist.model import Host

HOSTS = (
    Host("web01", "10.0.0.1", labels=("web", "prod")),
    Host("web02", "10.0.0.2", labels=("web", "prod")),
    Host("web03", "10.0.0.3", labels=("web", "staging")),
    Host("db1", "10.0.1.1", labels=("db", "prod")),
    Host("stage1", "10.0.2.1", labels=("staging",)),
)


def _names(pattern: str) -> list[str]:
    return [host.name for host in limit_hosts(HOSTS, pattern)]


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("web02", ["web02"]),
        ("web", ["web01", "web02", "web03"]),
        ("all", ["web01", "web02", "web03", "db1", "stage1"]),
        ("*", ["web01", "web02", "web03", "db1", "stage1"]),
        ("web0*", ["web01", "web02", "web03"]),
        ("web0?:db?", ["web01", "web02", "web03", "db1"]),
        ("prod:!web", ["db1"]),
        ("!web", ["db1", "stage1"]),
        ("&staging", ["web03", "stage1"]),
        ("web:&staging", ["web03"]),
        ("!db1:prod", ["web01", "web02"]),
        ("stage1,db1", ["db1", "stage1"]),
        ("~web0[13]", ["web01", "web03"]),
        ("~(web|db)1:!web01", ["db1"]),
        ("s*", ["web03", "stage1"]),
    ],
)
def test_patterns_select_like_ansible(pattern: str, names: list[str]) -> None:
    """Names, labels, globs, regexes, unions, intersections and exclusions; inventory order kept."""
    assert _names(pattern) == names


def test_splitting_keeps_brackets_whole() -> None:
    """Colons inside [...] do not split a term; commas win over colons."""
    assert split_pattern("web[0:2]:db") == ["web[0:2]", "db"]
    assert split_pattern("a:b,c") == ["a:b", "c"]
    assert split_pattern(" a , !b ") == ["a", "!b"]


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("webb", "'webb' matches no host name or label"),
        ("web:!nosuch", "'nosuch' matches no host name or label"),
        ("web:&db", "leaves no host"),
        ("web[0]", "subscripts such as group[0] are not supported"),
        ("web[0:1]", "subscripts"),
        ("@hosts.txt", "@FILE"),
        ("~web(", "'~web(':"),
        ("", "is empty"),
        (",", "is empty"),
    ],
)
def test_bad_patterns_name_the_term(pattern: str, problem: str) -> None:
    """A term that matches nothing, a subscript or a bad regex is an error naming it."""
    with pytest.raises(ConfigError) as info:
        limit_hosts(HOSTS, pattern)
    assert str(info.value).startswith(f"--limit {pattern}: ")
    assert problem in str(info.value)
