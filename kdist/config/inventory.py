"""Load and validate the host inventory into frozen Host records, once, at the edge.

Three formats are read: kdist's own YAML (`defaults:` and `hosts:`), and Ansible inventories in
YAML or INI (config/ansible.py), told apart by their shape or named with `ansible:FILE`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kdist.config import ansible
from kdist.config import validate as v
from kdist.config.loader import load_yaml_text
from kdist.errors import InventoryError
from kdist.model import DEFAULT_DOCKER_SOCKET, DEFAULT_WORKDIR, Endpoint, Host, Inventory

# The environment variable naming the inventory file when --hosts is not given.
HOSTS_ENV = "KDIST_HOSTS"
ANSIBLE_PREFIX = "ansible:"  # --hosts ansible:FILE reads FILE as an Ansible inventory

DEFAULT_KEYS = (
    "user", "port", "identity_file", "known_hosts", "workdir", "capacity", "env", "docker_socket"
)  # fmt: skip
HOST_KEYS = (*DEFAULT_KEYS, "address", "platforms", "labels")
# Keys whose written value beats ssh_config; left out, ssh_config (or SSH's default) decides.
CONNECTION_KEYS = ("port", "user", "identity_file", "known_hosts")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9_.:%\[\]-]+$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
_INI_SECTION = re.compile(r"^\[[^\]\s]+\]\s*([#;].*)?$")
_YAML_KEY = re.compile(r"^[^\s#;\[][^=]*:(\s|$)")

WhereOf = Callable[[str], v.Where]
_VARS_SUFFIXES = ("", ".yml", ".yaml", ".json")  # ansible-core's YAML_FILENAME_EXTENSIONS and none


def load_inventory(spec: Path) -> Inventory:
    """Read, validate and default an inventory: kdist YAML, or Ansible YAML or INI."""
    path, forced = _ansible_spec(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read: {exc}"
        raise InventoryError(msg) from exc
    return parse_inventory_text(
        text, str(path), path.parent, ansible_only=forced, vars_folder=path.parent
    )


def _ansible_spec(spec: Path) -> tuple[Path, bool]:
    text = str(spec)
    if text.startswith(ANSIBLE_PREFIX) and not spec.exists():
        return Path(text.removeprefix(ANSIBLE_PREFIX)), True
    return spec, False


def parse_inventory_text(
    text: str,
    source: str = "<text>",
    base: Path | None = None,
    *,
    ansible_only: bool = False,
    vars_folder: Path | None = None,
) -> Inventory:
    """Validate an inventory given as text, whichever of the three formats it is in.

    An Ansible inventory also takes `group_vars/` and `host_vars/` from `vars_folder`.
    """
    base = base or Path()
    files = ansible_vars_files(vars_folder) if vars_folder is not None else None
    if _looks_like_ini(text):
        return _from_ansible(ansible.parse_ini(text, source, files), source, base)
    data = load_yaml_text(text, source, InventoryError)
    if ansible_only or _looks_like_ansible_yaml(data):
        return _from_ansible(ansible.parse_yaml(data, source, files), source, base)
    return parse_inventory(data, source, base)


def ansible_vars_files(folder: Path) -> ansible.VarsFiles:
    """group_vars/NAME and host_vars/NAME in `folder`, as Ansible's host_group_vars finds them."""

    def read(kind: str, name: str) -> Mapping[str, Any]:
        merged: dict[str, Any] = {}
        for path in _vars_paths(folder / kind, name):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InventoryError(f"{path}: cannot read: {exc}") from exc
            data = load_yaml_text(text, str(path), InventoryError)
            if data is None:
                continue
            if not isinstance(data, dict):
                raise InventoryError(f"{path}: variables must be a mapping")
            merged.update(data)  # later files win, as hash_behaviour=replace merges them
        return merged

    return read


def _vars_paths(folder: Path, name: str) -> list[Path]:
    # The first of NAME, NAME.yml, NAME.yaml, NAME.json that exists; a folder gives its files.
    for suffix in _VARS_SUFFIXES:
        path = folder / (name + suffix)
        if path.is_dir():
            return _vars_folder_files(path)
        if path.exists():
            return [path]
    return []


def _vars_folder_files(folder: Path) -> list[Path]:
    # Sorted, recursively; hidden files, backups (`~`) and other suffixes are skipped.
    found: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name.endswith("~"):
            continue
        if path.is_dir():
            found.extend(_vars_folder_files(path))
        elif path.suffix in _VARS_SUFFIXES:
            found.append(path)
    return found


def _looks_like_ini(text: str) -> bool:
    # INI starts with a [section], or with host lines: then no line is a YAML `key:`.
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and line[0] not in "#;"]
    if not lines or lines[0].startswith(("-", "{", "---")):
        return False
    return bool(_INI_SECTION.match(lines[0])) or not any(_YAML_KEY.match(x) for x in lines)


def _looks_like_ansible_yaml(data: Any) -> bool:  # noqa: ANN401
    # Ansible's top level is groups, each made of `hosts`, `children` and `vars`; kdist's is
    # `defaults` and `hosts` (whose keys are host names). Anything else is reported as kdist's.
    if not isinstance(data, dict) or "defaults" in data:
        return False
    groups = [body for body in data.values() if body is not None]
    return bool(groups) and all(
        isinstance(body, dict) and body and set(body) <= set(ansible.GROUP_SECTIONS)
        for body in groups
    )


def parse_inventory(data: Any, source: str, base: Path) -> Inventory:  # noqa: ANN401
    """Validate parsed YAML as a kdist inventory; relative paths are taken from `base`."""
    top = v.Where(source, "", InventoryError)
    doc = v.mapping(data, top)
    v.no_unknown_keys(doc, ("defaults", "hosts"), top)
    defaults = v.mapping(doc.get("defaults") or {}, top / "defaults")
    v.no_unknown_keys(defaults, DEFAULT_KEYS, top / "defaults")
    hosts = v.mapping(doc.get("hosts"), top / "hosts") if "hosts" in doc else {}
    if not hosts:
        raise (top / "hosts").fail("must list at least one host")
    parsed = tuple(_kdist_host(name, entry, defaults, top, base) for name, entry in hosts.items())
    return Inventory(hosts=parsed, source=source)


def _kdist_host(
    name: str,
    entry: Any,  # noqa: ANN401 - raw YAML, checked below
    defaults: Mapping[str, Any],
    top: v.Where,
    base: Path,
) -> Host:
    at = top / "hosts" / name
    _check_name(name, at)
    own = v.mapping(entry if entry is not None else {}, at)
    v.no_unknown_keys(own, HOST_KEYS, at)

    def where(key: str) -> v.Where:
        # Report a defaulted value at the place it was written.
        return at / key if key in own else top / "defaults" / key

    env = {**_env(defaults, top / "defaults"), **_env(own, at)}
    return _host(name, {**defaults, **own, "env": env}, where, base)


def _from_ansible(found: Sequence[ansible.AnsibleHost], source: str, base: Path) -> Inventory:
    if not found:
        raise InventoryError(f"{source}: the Ansible inventory lists no host")
    entries = ansible.kdist_entries(found, HOST_KEYS, source)
    hosts = []
    for entry in entries:

        def where(key: str, entry: ansible.Entry = entry) -> v.Where:
            return v.Where(
                source, f"host {entry.name}: {entry.written.get(key, key)}", InventoryError
            )

        _check_name(entry.name, v.Where(source, f"host {entry.name}", InventoryError))
        env = v.env_mapping(entry.values["env"], where("env")) if "env" in entry.values else {}
        hosts.append(_host(entry.name, {**entry.values, "env": env}, where, base))
    return Inventory(hosts=tuple(hosts), source=source)


def _check_name(name: str, at: v.Where) -> None:
    if not _NAME.fullmatch(name):
        raise at.fail("host names are letters, digits, '.', '_' and '-' (at most 63)")


def _host(name: str, values: Mapping[str, Any], where: WhereOf, base: Path) -> Host:
    """One Host from checked-for-shape values; `where(key)` says where a key was written."""
    written = frozenset(k for k in CONNECTION_KEYS if values.get(k) is not None)
    identity = _path(values.get("identity_file"), where("identity_file"), base)
    known = _path(values.get("known_hosts"), where("known_hosts"), base)
    platforms = values.get("platforms")
    return Host(
        name=name,
        address=_address(values.get("address", name), where("address")),
        port=v.integer(values.get("port", 22), where("port"), 1, 65535),
        user=_user(values.get("user"), where("user")),
        identity_files=(identity,) if identity else (),
        known_hosts=(known,) if known else (),
        workdir=_absolute(values.get("workdir", DEFAULT_WORKDIR), where("workdir")),
        capacity=v.integer(values.get("capacity", 1), where("capacity"), 1, 256),
        env=values["env"],
        platforms=None if platforms is None else v.platform_list(platforms, where("platforms")),
        labels=v.string_list(values.get("labels", []), where("labels")),
        docker_socket=_absolute(
            values.get("docker_socket", DEFAULT_DOCKER_SOCKET), where("docker_socket")
        ),
        written=written,
    )


def missing_known_hosts(inventory: Inventory) -> list[str]:
    """One line per known_hosts file that no host can check keys against, naming the hosts."""
    users: dict[tuple[Path, ...], list[str]] = {}
    for host in inventory.hosts:
        if host.local:
            continue
        hops: list[tuple[str, Endpoint]] = [
            (f"jump host {j.alias} of {host.name}", j) for j in host.jump
        ]
        for who, hop in [*hops, (host.name, host.endpoint)]:
            files = hop.known_hosts
            if files and not any(path.is_file() for path in files):
                users.setdefault(files, []).append(who)
    lines = []
    for files, needers in users.items():
        names = ", ".join(map(str, files))
        lines.append(
            f"{inventory.source}: known_hosts file {names} does not exist "
            f"(needed by {', '.join(needers)}); create it, or record keys on first use "
            "with --accept-new-host-keys"
        )
    return lines


def _env(section: Mapping[str, Any], at: v.Where) -> dict[str, str]:
    return v.env_mapping(section["env"], at / "env") if "env" in section else {}


def _address(value: Any, at: v.Where) -> str:  # noqa: ANN401
    text = v.string(value, at)
    # A leading '-' would be read as an option by ssh or rsync: refuse it outright.
    if text.startswith("-") or not _ADDRESS.fullmatch(text):
        raise at.fail(f"{text!r} is not a valid host name or address")
    return text


def _user(value: Any, at: v.Where) -> str | None:  # noqa: ANN401
    if value is None:
        return None
    text = v.string(value, at)
    if not _USER.fullmatch(text):
        raise at.fail(f"{text!r} is not a valid user name")
    return text


def _path(value: Any, at: v.Where, base: Path) -> Path | None:  # noqa: ANN401
    if value is None:
        return None
    text = v.string(value, at)
    try:
        path = Path(text).expanduser()
        return path if path.is_absolute() else (base / path).resolve()
    except (RuntimeError, OSError) as exc:  # ~unknown-user, a symlink loop
        raise at.fail(f"cannot use {text!r}: {exc}") from exc


def _absolute(value: Any, at: v.Where) -> str:  # noqa: ANN401
    text = v.string(value, at)
    if not text.startswith("/"):
        raise at.fail(f"must be an absolute path on the build host, not {text!r}")
    if any(part == ".." for part in text.split("/")):
        raise at.fail("must not contain '..'")
    return text.rstrip("/") or "/"
