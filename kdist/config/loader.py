"""Safe YAML loading for inventories and profiles; the only module that imports yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kdist.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain scalars", key_node.start_mark
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_yaml_text(text: str, source: str, error: type[ConfigError] = ConfigError) -> Any:  # noqa: ANN401
    """Parse YAML text safely; errors name `source`, the line and the problem."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        if "\t" in problem or "found character '\\t'" in str(exc):
            problem = "tab characters are not allowed for indentation; use spaces"
        raise error(f"{where}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{source}: {exc}") from exc
    except ValueError as exc:  # e.g. an implicit timestamp that is no real date: 2001-13-01
        raise error(f"{source}: invalid value: {exc}") from exc
    except RecursionError:
        raise error(f"{source}: nested too deeply") from None


def load_yaml_file(path: Path, error: type[ConfigError] = ConfigError) -> Any:  # noqa: ANN401
    """Read and parse a YAML file; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from exc
    return load_yaml_text(text, str(path), error)
