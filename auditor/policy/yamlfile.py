"""YAML files loaded with the line of every value, so validation errors can name file:line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from auditor.errors import InputError

try:  # the C loader is several times faster on large files
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

PathKey = tuple[str | int, ...]


@dataclass
class YamlDocument:
    """A parsed YAML file: its data and the 1-based line of each value by path."""

    path: Path
    data: Any
    lines: dict[PathKey, int]

    def line_of(self, loc: PathKey) -> int:
        """The line of `loc`, or of its nearest parent that has one."""
        probe = tuple(loc)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), 1)

    def where(self, loc: PathKey = ()) -> str:
        """'file:line' for `loc`."""
        return f"{self.path}:{self.line_of(loc)}"

    def error(self, loc: PathKey, message: str) -> InputError:
        """An InputError located at `loc`."""
        return InputError(self.where(loc), message)

    def validation_error(self, exc: ValidationError, base: PathKey = ()) -> InputError:
        """The first pydantic error as one located InputError."""
        first = exc.errors()[0]
        loc = tuple(part for part in first["loc"] if not _is_union_tag(part))
        field = ".".join(str(p) for p in loc) or "document"
        return self.error(base + loc, f"{field}: {first['msg']}")


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts the union member's tag into error locations (e.g. 'all', 'leaf'); the
    # YAML has no such level. Tags are the ones we give Discriminator(...) and Tag(...).
    return isinstance(part, str) and part.startswith("<") and part.endswith(">")


_constructor = yaml.constructor.SafeConstructor()


def _build(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], file: Path) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        _constructor.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise InputError(f"{file}:{key_node.start_mark.line + 1}", "mapping keys must be scalars")
            if key in result:
                raise InputError(f"{file}:{key_node.start_mark.line + 1}", f"duplicate key '{key}'")
            child = (*path, str(key))
            lines[child] = key_node.start_mark.line + 1  # errors point at the key, not its value
            result[key] = _build(value_node, child, lines, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), lines, file) for i, item in enumerate(node.value)]
    try:
        return _constructor.construct_object(node, deep=True)
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(
            f"{file}:{node.start_mark.line + 1}", f"invalid value {node.value!r}: {exc}"
        ) from exc


def load_yaml(path: Path) -> YamlDocument:
    """Parse `path`; a syntax error or duplicate key raises InputError naming file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"not UTF-8 text: {exc.reason}") from exc
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = f"invalid YAML: {exc.problem or exc}"
        if exc.context and exc.context_mark is not None and exc.context_mark.line + 1 != line:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise InputError(f"{path}:{line}", message) from exc
    except yaml.YAMLError as exc:
        raise InputError(str(path), f"invalid YAML: {exc}") from exc
    lines: dict[PathKey, int] = {}
    data = None if node is None else _build(node, (), lines, path)
    lines.setdefault((), 1)
    return YamlDocument(path=path, data=data, lines=lines)
