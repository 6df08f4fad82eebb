"""Load and validate the host inventory (YAML) into frozen Host records, once, at the edge."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdist.config import validate as v
from kdist.config.loader import load_yaml_file, load_yaml_text
from kdist.errors import InventoryError
from kdist.model import DEFAULT_DOCKER_SOCKET, DEFAULT_WORKDIR, Host, Inventory

# The environment variable naming the inventory file when --hosts is not given.
HOSTS_ENV = "KDIST_HOSTS"

DEFAULT_KEYS = (
    "user", "port", "identity_file", "known_hosts", "workdir", "capacity", "env", "docker_socket"
)  # fmt: skip
HOST_KEYS = (*DEFAULT_KEYS, "address", "platforms", "labels")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9_.:%\[\]-]+$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")


def load_inventory(path: Path) -> Inventory:
    """Read, validate and default an inventory file."""
    data = load_yaml_file(path, InventoryError)
    return parse_inventory(data, str(path), base=path.parent)


def parse_inventory_text(text: str, source: str = "<text>", base: Path | None = None) -> Inventory:
    """Validate an inventory given as YAML text (for tests and embedded inventories)."""
    return parse_inventory(load_yaml_text(text, source, InventoryError), source, base or Path())


def parse_inventory(data: Any, source: str, base: Path) -> Inventory:  # noqa: ANN401
    """Validate parsed YAML as an inventory; relative paths are taken from `base`."""
    top = v.Where(source, "", InventoryError)
    doc = v.mapping(data, top)
    v.no_unknown_keys(doc, ("defaults", "hosts"), top)
    defaults = v.mapping(doc.get("defaults") or {}, top / "defaults")
    v.no_unknown_keys(defaults, DEFAULT_KEYS, top / "defaults")
    hosts = v.mapping(doc.get("hosts"), top / "hosts") if "hosts" in doc else {}
    if not hosts:
        raise (top / "hosts").fail("must list at least one host")
    parsed = tuple(_host(name, entry, defaults, top, base) for name, entry in hosts.items())
    return Inventory(hosts=parsed, source=source)


def _host(
    name: str,
    entry: Any,  # noqa: ANN401 - raw YAML, checked below
    defaults: Mapping[str, Any],
    top: v.Where,
    base: Path,
) -> Host:
    at = top / "hosts" / name
    if not _NAME.fullmatch(name):
        raise at.fail("host names are letters, digits, '.', '_' and '-' (at most 63)")
    own = v.mapping(entry if entry is not None else {}, at)
    v.no_unknown_keys(own, HOST_KEYS, at)
    merged = {**defaults, **own}

    def where(key: str) -> v.Where:
        # Report a defaulted value at the place it was written.
        return at / key if key in own else top / "defaults" / key

    env = {**_env(defaults, top / "defaults"), **_env(own, at)}
    return Host(
        name=name,
        address=_address(merged.get("address", name), where("address")),
        port=v.integer(merged.get("port", 22), where("port"), 1, 65535),
        user=_user(merged.get("user"), where("user")),
        identity_file=_path(merged.get("identity_file"), where("identity_file"), base),
        known_hosts=_path(merged.get("known_hosts"), where("known_hosts"), base),
        workdir=_absolute(merged.get("workdir", DEFAULT_WORKDIR), where("workdir")),
        capacity=v.integer(merged.get("capacity", 1), where("capacity"), 1, 256),
        env=env,
        platforms=(
            v.platform_list(own["platforms"], at / "platforms") if "platforms" in own else None
        ),
        labels=v.string_list(own.get("labels", []), at / "labels"),
        docker_socket=_absolute(
            merged.get("docker_socket", DEFAULT_DOCKER_SOCKET), where("docker_socket")
        ),
    )


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

