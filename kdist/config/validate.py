"""Small typed checks for parsed YAML; every error names the file and the key path."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kdist.errors import ConfigError
from kdist.model import Platform

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Where:
    """A position in a document: file name plus key path, e.g. `inv.yaml: hosts.h1.port`."""

    source: str
    path: str
    error: type[ConfigError] = ConfigError

    def __truediv__(self, key: object) -> Where:
        sep = "" if not self.path else "."
        step = f"[{key}]" if isinstance(key, int) else f"{sep}{key}"
        return Where(self.source, self.path + step, self.error)

    def fail(self, problem: str) -> ConfigError:
        """An error of the right class that names this position."""
        where = f"{self.source}: {self.path}" if self.path else self.source
        return self.error(f"{where}: {problem}")


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def mapping(value: Any, at: Where) -> Mapping[str, Any]:  # noqa: ANN401
    """Check that `value` is a mapping with string keys."""
    if not isinstance(value, dict):
        raise at.fail(f"must be a mapping, not {_type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            raise at.fail(f"keys must be strings, not {_type_name(key)} {key!r}")
    return value


def no_unknown_keys(value: Mapping[str, Any], allowed: Iterable[str], at: Where) -> None:
    """Refuse keys outside `allowed`, naming the first one and the allowed set."""
    allowed_set = set(allowed)
    for key in value:
        if key not in allowed_set:
            raise (at / key).fail(f"unknown key (allowed: {', '.join(sorted(allowed_set))})")


def string(value: Any, at: Where, *, empty: bool = False) -> str:  # noqa: ANN401
    """Check for a string (non-empty unless `empty`)."""
    if not isinstance(value, str):
        raise at.fail(f"must be a string, not {_type_name(value)}")
    if not empty and not value.strip():
        raise at.fail("must not be empty")
    if "\x00" in value or "\n" in value:
        raise at.fail("must not contain NUL or newline characters")
    return value


def boolean(value: Any, at: Where) -> bool:  # noqa: ANN401
    """Check for true or false (YAML's booleans; strings such as "no" are refused)."""
    if not isinstance(value, bool):
        raise at.fail(f"must be true or false, not {_type_name(value)}")
    return value


def integer(value: Any, at: Where, low: int, high: int) -> int:  # noqa: ANN401
    """Check for an integer within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise at.fail(f"must be an integer, not {_type_name(value)}")
    if not low <= value <= high:
        raise at.fail(f"must be {low}..{high}")
    return value


def string_list(value: Any, at: Where) -> tuple[str, ...]:  # noqa: ANN401
    """Check for a list of non-empty strings."""
    if not isinstance(value, list):
        raise at.fail(f"must be a list, not {_type_name(value)}")
    return tuple(string(item, at / i) for i, item in enumerate(value))


def platform_list(value: Any, at: Where) -> tuple[Platform, ...]:  # noqa: ANN401
    """Check for a list of `os/arch` platforms, without duplicates."""
    words = string_list(value, at)
    platforms: list[Platform] = []
    for i, word in enumerate(words):
        try:
            platform = Platform.parse(word)
        except ValueError as exc:
            raise (at / i).fail(str(exc)) from exc
        if platform in platforms:
            raise (at / i).fail(f"duplicate platform {word!r}")
        platforms.append(platform)
    return tuple(platforms)


def env_mapping(value: Any, at: Where) -> dict[str, str]:  # noqa: ANN401
    """Check for an environment mapping of NAME: string (numbers are refused, quote them)."""
    env: dict[str, str] = {}
    for key, item in mapping(value, at).items():
        if not _ENV_NAME.fullmatch(key):
            raise (at / key).fail("is not a valid environment variable name")
        env[key] = string(item, at / key, empty=True)
    return env
