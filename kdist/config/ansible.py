"""Ansible inventories (YAML and INI) read the way ansible-core reads them, as plain data.

Groups, `children`, group and host `vars`, `group_vars/` and `host_vars/` beside the inventory
(read through the `VarsFiles` callback, so this module stays pure), host ranges (`web[01:03]`,
`db-[a:c]`, with a step) and `host:port` are understood; variables merge with Ansible's
precedence (`all`, then groups by depth, `ansible_group_priority` and name, then their
group_vars files in that order, then the host, then its host_vars file). What kdist makes of
the variables (`ansible_host`, `kdist_capacity`, ...) is `kdist_entries`; validating them is
inventory.py's job. INI has no parser outside ansible itself, so the few rules of ansible-core's
`ini` plugin are written out here; `ansible-inventory --list` is the oracle the tests use.
"""

from __future__ import annotations

import ast
import re
import shlex
import string
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kdist.errors import InventoryError

ALL = "all"
UNGROUPED = "ungrouped"
# Variables Ansible's ssh connection reads, and the kdist inventory key each one fills.
CONNECTION_VARS = {
    "ansible_host": "address",
    "ansible_port": "port",
    "ansible_user": "user",
    "ansible_ssh_private_key_file": "identity_file",
}
PREFIX = "kdist_"  # kdist_capacity=4 is the kdist key `capacity`
_PRIORITY = "ansible_group_priority"  # sets a group's rank, is no variable
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_LINE = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_HOST_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])+):(\d+)$")
_BRACKETED_PORT = re.compile(r"^\[([^\]]+)\]:(\d+)$")
GROUP_SECTIONS = ("children", "hosts", "vars")
# ("group_vars" or "host_vars", a group or host name) -> the variables of that name's files there,
# as ansible-core's host_group_vars plugin finds them next to the inventory ({} when none).
VarsFiles = Callable[[str, str], Mapping[str, Any]]


@dataclass(frozen=True)
class AnsibleHost:
    """One host as Ansible sees it: its variables after precedence, and its groups."""

    name: str
    vars: Mapping[str, Any]
    origins: Mapping[str, str]  # variable -> "host NAME" or "group NAME": who set the value used
    groups: tuple[str, ...]  # every group it is in, ancestors included, without all/ungrouped


@dataclass(frozen=True)
class Entry:
    """One host in kdist's terms: inventory keys with their raw values, and who wrote each."""

    name: str
    values: Mapping[str, Any]
    written: Mapping[str, str]  # kdist key -> e.g. "ansible_port (group web)", for errors


@dataclass
class _Group:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    priority: int = 1


@dataclass
class _Host:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)


class _Builder:
    """The mutable inventory while a file is read; `hosts()` gives the frozen result."""

    def __init__(self, source: str, vars_files: VarsFiles | None = None) -> None:
        self.source = source
        self.vars_files = vars_files
        self.groups: dict[str, _Group] = {}
        self._hosts: dict[str, _Host] = {}
        self.add_group(ALL)
        self.add_group(UNGROUPED)
        self.add_child(ALL, UNGROUPED)

    def fail(self, where: str, problem: str) -> InventoryError:
        """An error naming the file and the place in it."""
        return InventoryError(f"{self.source}: {where}: {problem}")

    def add_group(self, name: str) -> None:
        """Declare a group (again: no-op)."""
        self.groups.setdefault(name, _Group(name))

    def add_host(self, name: str, group: str, port: int | None) -> None:
        """Put a host into a group; a port only counts where the host first appears."""
        if not name:
            raise self.fail(f"group {group}", "empty host name")
        host = self._hosts.get(name)
        if host is None:
            host = self._hosts[name] = _Host(name)
            if port is not None:
                host.vars["ansible_port"] = port
        if group not in host.groups:
            host.groups.append(group)

    def add_child(self, parent: str, child: str) -> None:
        """Make `child` a subgroup of `parent`, refusing loops as Ansible does."""
        if child == parent or child in self._ancestors(parent):
            raise self.fail(f"group {parent}", f"adding {child} as a child makes a loop")
        group = self.groups[parent]
        if child not in group.children:
            group.children.append(child)
            self.groups[child].parents.append(parent)

    def set_group_var(self, group: str, key: str, value: Any) -> None:  # noqa: ANN401
        """Set a group variable (later values replace earlier ones)."""
        if key == _PRIORITY:
            try:
                self.groups[group].priority = int(value)
            except (TypeError, ValueError) as exc:
                raise self.fail(f"group {group}", f"{_PRIORITY} must be an integer") from exc
            return
        self.groups[group].vars[_key(key, self, f"group {group}")] = value

    def set_host_var(self, host: str, key: str, value: Any) -> None:  # noqa: ANN401
        """Set a host variable (later values replace earlier ones)."""
        self._hosts[host].vars[_key(key, self, f"host {host}")] = value

    def _ancestors(self, group: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.groups[group].parents)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.groups[name].parents)
        return seen

    def _reconcile(self) -> None:
        # As ansible-core's InventoryData.reconcile_inventory: orphans hang under `all`, hosts
        # in no other group are `ungrouped`, and `ungrouped` keeps no host that has a group.
        for name, group in self.groups.items():
            if name != ALL and not group.parents:
                self.add_child(ALL, name)
        for host in self._hosts.values():
            named = [g for g in host.groups if g not in (ALL, UNGROUPED)]
            if named and UNGROUPED in host.groups:
                host.groups.remove(UNGROUPED)
            elif not named and UNGROUPED not in host.groups:
                host.groups.append(UNGROUPED)

    def _depths(self) -> dict[str, int]:
        # A group's depth is its longest path from `all`, as Ansible's incremental updates leave it.
        depth = {ALL: 0}
        order = [ALL]
        while order:
            name = order.pop()
            for child in self.groups[name].children:
                if depth.get(child, -1) < depth[name] + 1:
                    depth[child] = depth[name] + 1
                    order.append(child)
        return depth

    def hosts(self) -> tuple[AnsibleHost, ...]:
        """Every host with its merged variables, in the order hosts first appeared."""
        self._reconcile()
        depth = self._depths()
        out = []
        for host in self._hosts.values():
            member = set(host.groups)
            for name in host.groups:
                member |= self._ancestors(name)
            ranked = sorted(
                (self.groups[g] for g in member),
                key=lambda g: (depth.get(g.name, 0), g.priority, g.name),
            )
            merged: dict[str, Any] = {}
            origins: dict[str, str] = {}
            for layer, origin in self._layers(ranked, host):
                merged.update(layer)
                origins.update(dict.fromkeys(layer, origin))
            named = tuple(g for g in self.groups if g in member and g not in (ALL, UNGROUPED))
            out.append(AnsibleHost(host.name, merged, origins, named))
        return tuple(out)


    def _layers(self, ranked: list[_Group], host: _Host) -> Iterable[tuple[Mapping[str, Any], str]]:
        # Ansible's default VARIABLE_PRECEDENCE: the inventory's vars of every group (by depth,
        # priority, name), then those groups' group_vars files in the same order, then the host's
        # own vars, then its host_vars file. So group_vars/web beats any group's inline vars.
        for group in ranked:
            yield group.vars, f"group {group.name}"
        for group in ranked:
            yield self._file_vars("group_vars", group.name), f"group_vars/{group.name}"
        yield host.vars, f"host {host.name}"
        yield self._file_vars("host_vars", host.name), f"host_vars/{host.name}"

    def _file_vars(self, kind: str, name: str) -> Mapping[str, Any]:
        if self.vars_files is None:
            return {}
        found = self.vars_files(kind, name)
        return {_key(key, self, f"{kind}/{name}"): value for key, value in found.items()}


def _key(key: object, builder: _Builder, where: str) -> str:
    if not isinstance(key, str) or not key:
        raise builder.fail(where, f"variable names must be strings, not {key!r}")
    return key


# --------------------------------------------------------------------------- host patterns


def expand_host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """`web[01:03]:2222` -> (['web01', 'web02', 'web03'], 2222), as Ansible's inventory does."""
    port: int | None = None
    for regex in (_BRACKETED_PORT, _HOST_PORT):
        match = regex.fullmatch(pattern)
        if match:
            pattern, port = match.group(1), int(match.group(2))
            break
    return (_expand_ranges(pattern) if "[" in pattern else [pattern]), port


def _expand_ranges(line: str) -> list[str]:
    head, sep, rest = line.partition("[")
    body, close, tail = rest.partition("]")
    if not sep or not close:
        msg = f"{line!r}: unclosed '[' in a host range"
        raise ValueError(msg)
    names = []
    for item in _range_items(body):
        name = head + item + tail
        names.extend(_expand_ranges(name) if "[" in name else [name])
    return names


def _range_items(body: str) -> list[str]:
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        msg = f"[{body}]: a host range is begin:end or begin:end:step"
        raise ValueError(msg)
    begin, end = bounds[0] or "0", bounds[1]
    if not end:
        msg = f"[{body}]: a host range needs an end"
        raise ValueError(msg)
    step = int(bounds[2]) if len(bounds) == 3 else 1
    if step < 1:
        msg = f"[{body}]: the step must be at least 1"
        raise ValueError(msg)
    letters = string.ascii_letters
    if begin in letters and end in letters:
        first, last = letters.index(begin), letters.index(end)
        if first > last:
            msg = f"[{body}]: begin must not come after end"
            raise ValueError(msg)
        return list(letters[first : last + 1 : step])
    width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
    if width and width != len(end):
        msg = f"[{body}]: zero-padded bounds must have the same width"
        raise ValueError(msg)
    numbers = range(int(begin), int(end) + 1, step)
    if not numbers:  # Ansible would silently define no host at all
        msg = f"[{body}]: begin must not come after end"
        raise ValueError(msg)
    return [str(n).zfill(width) for n in numbers]


# --------------------------------------------------------------------------- YAML


def parse_yaml(
    data: Any,  # noqa: ANN401
    source: str,
    vars_files: VarsFiles | None = None,
) -> tuple[AnsibleHost, ...]:
    """Read an Ansible YAML inventory already parsed by kdist's YAML loader."""
    builder = _Builder(source, vars_files)
    if not isinstance(data, dict) or not data:
        raise builder.fail("top level", "an Ansible YAML inventory is a mapping of groups")
    if "plugin" in data:
        raise builder.fail("plugin", "inventory plugin configurations are not supported")
    for name, body in data.items():
        _yaml_group(builder, name, body)
    return builder.hosts()


def _yaml_group(builder: _Builder, name: object, body: Any) -> str:  # noqa: ANN401
    if not isinstance(name, str) or not name:
        raise builder.fail("groups", f"group names must be strings, not {name!r}")
    where = f"group {name}"
    if body is not None and not isinstance(body, dict):
        raise builder.fail(where, f"must be a mapping of {', '.join(GROUP_SECTIONS)}")
    builder.add_group(name)
    for key, value in (body or {}).items():
        if key not in GROUP_SECTIONS:
            raise builder.fail(
                f"{where}: {key}", f"unknown key (allowed: {', '.join(GROUP_SECTIONS)})"
            )
        section = {value: None} if isinstance(value, str) else value
        if section is None:
            continue
        if not isinstance(section, dict):
            raise builder.fail(f"{where}: {key}", "must be a mapping")
        _yaml_section(builder, name, key, section)
    return name


def _yaml_section(builder: _Builder, group: str, key: str, section: dict[Any, Any]) -> None:
    if key == "vars":
        for var, value in section.items():
            builder.set_group_var(group, var, value)
    elif key == "children":
        for child, body in section.items():
            builder.add_child(group, _yaml_group(builder, child, body))
    else:
        for pattern, host_vars in section.items():
            _yaml_hosts(builder, group, pattern, host_vars)


def _yaml_hosts(builder: _Builder, group: str, pattern: object, host_vars: Any) -> None:  # noqa: ANN401
    where = f"group {group}: hosts"
    if not isinstance(pattern, str):
        raise builder.fail(where, f"host {pattern!r} must be a string (quote numbers)")
    if host_vars is not None and not isinstance(host_vars, dict):
        raise builder.fail(f"{where}: {pattern}", "host variables must be a mapping")
    try:
        names, port = expand_host_pattern(pattern)
    except ValueError as exc:
        raise builder.fail(f"{where}: {pattern}", str(exc)) from exc
    for name in names:
        builder.add_host(name, group, port)
        for var, value in (host_vars or {}).items():
            builder.set_host_var(name, var, value)


# --------------------------------------------------------------------------- INI


def parse_ini(
    text: str, source: str, vars_files: VarsFiles | None = None
) -> tuple[AnsibleHost, ...]:
    """Read an Ansible INI inventory, line by line as ansible-core's `ini` plugin does."""
    reader = _IniReader(_Builder(source, vars_files))
    for number, line in enumerate(text.splitlines(), 1):
        reader.line(number, line.strip())
    reader.finish()
    return reader.builder.hosts()


class _IniReader:
    """The INI state machine: the current section and the groups still awaited."""

    def __init__(self, builder: _Builder) -> None:
        self.builder = builder
        self.group = UNGROUPED
        self.state = "hosts"
        self.number = 0
        # group -> (line, "vars"|"children", parents): used before being declared
        self.pending: dict[str, tuple[int, str, list[str]]] = {}

    def fail(self, problem: str) -> InventoryError:
        """An error naming the file, the line and the section."""
        section = self.group + ("" if self.state == "hosts" else f":{self.state}")
        return InventoryError(f"{self.builder.source}:{self.number}: [{section}]: {problem}")

    def line(self, number: int, line: str) -> None:
        """Take one stripped line."""
        self.number = number
        if not line or line[0] in "#;":
            return
        section = _SECTION.match(line)
        if section:
            self._section(section.group(1), section.group(2) or "hosts")
        elif line.startswith("[") and line.endswith("]"):
            self.group, self.state = line, "hosts"
            raise self.fail("not a valid section header (no spaces allowed)")
        elif self.state == "hosts":
            self._hosts(line)
        elif self.state == "vars":
            self._var(line)
        else:
            self._child(line)

    def _section(self, group: str, state: str) -> None:
        self.group, self.state = group, state
        if state not in ("hosts", "children", "vars"):
            raise self.fail(f"unknown section type {state!r} (hosts, children or vars)")
        if group not in self.builder.groups:
            if state == "vars" and group not in self.pending:
                self.pending[group] = (self.number, "vars", [])
            self.builder.add_group(group)
        waited = self.pending.get(group)
        if waited is not None and state != "vars":
            if waited[1] == "children":
                self._adopt(group)
            else:
                del self.pending[group]

    def _adopt(self, group: str) -> None:
        for parent in self.pending[group][2]:
            self.builder.add_child(parent, group)
            if parent in self.pending and self.pending[parent][1] == "children":
                self._adopt(parent)
        del self.pending[group]

    def _hosts(self, line: str) -> None:
        try:
            tokens = shlex.split(line, comments=True)
            names, port = expand_host_pattern(tokens[0])
        except ValueError as exc:
            raise self.fail(f"bad host line: {exc}") from exc
        variables = {}
        for token in tokens[1:]:
            key, sep, value = token.partition("=")
            if not sep:
                raise self.fail(f"expected key=value after the host name, got {token!r}")
            variables[key] = parse_value(value)
        for name in names:
            self.builder.add_host(name, self.group, port)
            for key, value in variables.items():
                self.builder.set_host_var(name, key, value)

    def _var(self, line: str) -> None:
        key, sep, value = line.partition("=")
        if not sep:
            raise self.fail(f"expected key=value, got {line!r}")
        self.builder.set_group_var(self.group, key.strip(), parse_value(value.strip()))

    def _child(self, line: str) -> None:
        match = _GROUP_LINE.match(line)
        if not match:
            raise self.fail(f"expected a group name, got {line!r}")
        child = match.group(1)
        if child in self.builder.groups:
            self.builder.add_child(self.group, child)
        elif child in self.pending:
            self.pending[child][2].append(self.group)
        else:
            self.pending[child] = (self.number, "children", [self.group])

    def finish(self) -> None:
        """Refuse sections about groups that were never declared."""
        for group, (number, state, parents) in self.pending.items():
            self.number = number
            if state == "vars":
                self.group, self.state = group, "vars"
                raise self.fail(f"group {group!r} is not declared anywhere")
            self.group, self.state = parents[-1], "children"
            raise self.fail(f"includes group {group!r}, which is not declared anywhere")


def parse_value(text: str) -> Any:  # noqa: ANN401
    """An INI value as Ansible reads it: a Python literal when it is one, else the string."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value)


def _plain(value: Any) -> Any:  # noqa: ANN401
    # Ansible keeps only YAML-like types: tuples and sets become lists, odd literals strings.
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


# --------------------------------------------------------------------------- kdist's view


def kdist_entries(hosts: Iterable[AnsibleHost], keys: Collection[str], source: str) -> list[Entry]:
    """The kdist inventory keys of each host: connection variables, `kdist_*`, groups as labels."""
    return [_entry(host, keys, source) for host in hosts]


def _entry(host: AnsibleHost, keys: Collection[str], source: str) -> Entry:
    values: dict[str, Any] = {}
    written: dict[str, str] = {}
    for var, value in host.vars.items():
        key = CONNECTION_VARS.get(var) or _kdist_key(var, host, keys, source)
        if key is None:
            continue  # an Ansible variable kdist has no use for
        values[key] = value
        written[key] = f"{var} (from {host.origins[var]})"
    own = _words(values.get("labels", []))
    if isinstance(own, list):  # anything else is left for the validator to refuse
        values["labels"] = list(dict.fromkeys([*host.groups, *own]))
        written.setdefault("labels", "the host's groups")
    if "platforms" in values:
        values["platforms"] = _words(values["platforms"])
    for key in ("port", "capacity"):
        if isinstance(values.get(key), str) and values[key].strip().isdigit():
            values[key] = int(values[key])
    return Entry(host.name, values, written)


def _kdist_key(var: str, host: AnsibleHost, keys: Collection[str], source: str) -> str | None:
    if not var.startswith(PREFIX):
        return None
    key = var.removeprefix(PREFIX)
    if key not in keys or key in CONNECTION_VARS.values():
        known = ", ".join(PREFIX + k for k in sorted(keys) if k not in CONNECTION_VARS.values())
        msg = f"{source}: host {host.name}: {var} (from {host.origins[var]}): "
        raise InventoryError(msg + f"unknown kdist variable (known: {known})")
    return key


def _words(value: Any) -> Any:  # noqa: ANN401
    # `kdist_platforms=linux/amd64,linux/arm64` in INI is a string; lists pass through.
    if isinstance(value, str):
        return [word for word in re.split(r"[,\s]+", value) if word]
    return value
