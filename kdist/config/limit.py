"""`--limit PATTERN`: Ansible's host patterns over kdist hosts, whose labels are the groups.

`a:b` or `a,b` is a union, `&x` keeps only hosts also in x, `!x` removes x; unions apply
first, then intersections, then exclusions, whatever the order written (as in Ansible). A term
is a host name, a label, `all` or `*`, a glob (`web*`, `build-*-0?`) or a regular expression
(`~web[0-9]+`). A term that matches no host is an error: it is almost always a typo.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from kdist.errors import ConfigError
from kdist.model import Host

_SUBSCRIPT = re.compile(r"^(.+)\[(?:-?\d+|\d*[:-]\d*)\]$")
_TERMS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_GLOB = (".", "?", "*", "[")


def limit_hosts(hosts: Sequence[Host], pattern: str) -> tuple[Host, ...]:
    """The hosts `pattern` selects, in inventory order; ConfigError naming a term that fails."""
    terms = split_pattern(pattern)
    if not terms:
        raise _fail(pattern, "is empty")
    chosen: set[str] = set()
    for term in _ordered(terms):
        matched = _match(hosts, term.lstrip("!&"), pattern)
        if term.startswith("!"):
            chosen -= matched
        elif term.startswith("&"):
            chosen &= matched
        else:
            chosen |= matched
    picked = tuple(h for h in hosts if h.name in chosen)
    if not picked:
        raise _fail(pattern, "leaves no host")
    return picked


def split_pattern(pattern: str) -> list[str]:
    """`a:b,!c` -> terms; commas split first, else colons outside brackets."""
    if pattern.startswith("@"):
        raise _fail(pattern, "reading patterns from a file (@FILE) is not supported")
    parts = pattern.split(",") if "," in pattern else _TERMS.findall(pattern)
    return [part.strip() for part in parts if part.strip()]


def _ordered(terms: list[str]) -> list[str]:
    plain = [t for t in terms if t[0] not in "!&"]
    return (
        (plain or ["all"]) + [t for t in terms if t[0] == "&"] + [t for t in terms if t[0] == "!"]
    )


def _match(hosts: Sequence[Host], term: str, pattern: str) -> set[str]:
    if not term:
        raise _fail(pattern, "has an empty term")
    if _SUBSCRIPT.match(term) and not term.startswith("~"):
        raise _fail(pattern, f"{term!r}: subscripts such as group[0] are not supported")
    if term in ("all", "*"):
        return {h.name for h in hosts}
    regex = _compile(term, pattern)
    labelled = {h.name for h in hosts if any(regex.match(label) for label in h.labels)}
    named: set[str] = set()
    if not labelled or term.startswith("~") or any(ch in term for ch in _GLOB):
        named = {h.name for h in hosts if regex.match(h.name)}
    if not labelled | named:
        raise _fail(pattern, f"{term!r} matches no host name or label")
    return labelled | named


def _compile(term: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(term[1:] if term.startswith("~") else fnmatch.translate(term))
    except re.error as exc:
        raise _fail(pattern, f"{term!r}: {exc}") from exc


def _fail(pattern: str, problem: str) -> ConfigError:
    return ConfigError(f"--limit {pattern}: {problem}")
