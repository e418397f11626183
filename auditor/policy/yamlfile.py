"""YAML files loaded with the line of every value, so validation errors can name file:line.

Every YAML input of auditor (policies, waivers, zones, policy tests, audit config, baselines,
attestations, GCP TLS policies) is read here, with limits that keep a hostile file cheap:

* at most `MAX_TEXT_BYTES` (16 MiB) per file, and only regular files (see auditor.inputfile);
* aliases may add at most `MAX_ALIAS_NODES` nodes to the document (a "billion laughs" file that
  expands a few lines into billions of values is refused before anything is built), and an alias
  may not refer to a node that contains it;
* nesting at most `MAX_DEPTH` levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from auditor.errors import InputError
from auditor.inputfile import MAX_TEXT_BYTES, read_text_input

try:  # the C loader is several times faster on large files
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

PathKey = tuple[str | int, ...]

MAX_ALIAS_NODES = 100_000  # nodes that aliases may add to a document, all aliases together
MAX_DEPTH = 200  # nesting of mappings and sequences


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


def _children(node: yaml.Node) -> list[tuple[yaml.Node, int]]:
    """Child nodes, each with the line that refers to it (a mapping value: its key's line)."""
    if isinstance(node, yaml.MappingNode):
        children = []
        for key, value in node.value:
            children += [(key, key.start_mark.line + 1), (value, key.start_mark.line + 1)]
        return children
    if isinstance(node, yaml.SequenceNode):
        return [(item, node.start_mark.line + 1) for item in node.value]
    return []


def _check_expansion(root: yaml.Node, file: Path) -> None:
    """Refuse alias bombs, recursive aliases and deep nesting, in time linear in the composed nodes.

    A composed document is a graph: an alias is the anchored node itself, reached again. Each node's
    expanded size is computed once (depth first, without recursion); reaching a finished node again
    adds its whole expanded size, reaching a node still being walked is a recursive alias.
    """
    sizes: dict[int, int] = {}
    walking: set[int] = set()
    added = 0
    # (node, the line that refers to it, children left to visit: None before the first visit)
    stack: list[tuple[yaml.Node, int, list[tuple[yaml.Node, int]] | None]] = [(root, 1, None)]
    while stack:
        node, line, pending = stack[-1]
        if pending is None:
            key = id(node)
            if key in walking:
                raise InputError(f"{file}:{line}", "an alias refers to a node that contains it")
            if key in sizes:  # an alias: everything under the anchored node is built again
                added += sizes[key]
                if added > MAX_ALIAS_NODES:
                    raise InputError(
                        f"{file}:{line}",
                        f"aliases expand the document by more than {MAX_ALIAS_NODES:,} nodes",
                    )
                stack.pop()
                continue
            if len(stack) > MAX_DEPTH:
                raise InputError(
                    f"{file}:{node.start_mark.line + 1}", f"nested deeper than {MAX_DEPTH} levels"
                )
            walking.add(key)
            pending = _children(node)
            pending.reverse()
            stack[-1] = (node, line, pending)
        if pending:
            stack.append((*pending.pop(), None))
            continue
        stack.pop()
        walking.discard(id(node))
        sizes[id(node)] = 1 + sum(sizes[id(child)] for child, _ in _children(node))


@dataclass
class _Builder:
    """Builds the data of one composed document, recording the line of every value."""

    file: Path
    lines: dict[PathKey, int]
    # a constructor per file: it caches every object it builds until it is dropped
    constructor: yaml.constructor.SafeConstructor = field(default_factory=yaml.constructor.SafeConstructor)
    # mapping node id -> how many of its pairs came from merge keys (`<<`); a node shared through an
    # alias is flattened once, so this is remembered for the next time it is built
    merged: dict[int, int] = field(default_factory=dict)

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return _scalar(node, self.file, self.constructor)

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        if id(node) not in self.merged:
            explicit = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
            self.constructor.flatten_mapping(node)  # merged pairs first, in precedence order
            self.merged[id(node)] = len(node.value) - explicit
        merged = self.merged[id(node)]
        result: dict[Any, Any] = {}
        explicit_keys: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise InputError(f"{self.file}:{line}", "mapping keys must be scalars")
            key = _scalar(key_node, self.file, self.constructor)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise InputError(f"{self.file}:{line}", "mapping keys must be scalars")
            if index >= merged:  # a key written here: it may override a merged one, not repeat itself
                if key in explicit_keys:
                    raise InputError(f"{self.file}:{line}", f"duplicate key '{key}'")
                explicit_keys.add(key)
            child = (*path, str(key))
            self.lines[child] = line  # errors point at the key, not its value
            result[key] = self.build(value_node, child)
        return result


def _scalar(node: yaml.Node, file: Path, constructor: yaml.constructor.SafeConstructor) -> Any:
    try:
        return constructor.construct_object(node, deep=True)
    except (ValueError, yaml.YAMLError) as exc:
        value = node.value if len(node.value) <= 80 else node.value[:77] + "..."
        raise InputError(f"{file}:{node.start_mark.line + 1}", f"invalid value {value!r}: {exc}") from exc


def load_yaml(path: Path) -> YamlDocument:
    """Parse `path`; a syntax error, duplicate key or alias bomb raises InputError naming file:line."""
    text = read_text_input(path, limit=MAX_TEXT_BYTES)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = f"invalid YAML: {exc.problem or exc}"
        if exc.context and exc.context_mark is not None and exc.context_mark.line + 1 != line:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise InputError(f"{path}:{line}", message) from exc
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. a raw control
        line = text.count("\n", 0, exc.position) + 1
        raise InputError(
            f"{path}:{line}",
            f"invalid YAML: {exc.reason}"
            + (f" (character #x{exc.character:04x})" if isinstance(exc.character, int) else ""),
        ) from exc
    except yaml.YAMLError as exc:
        raise InputError(str(path), f"invalid YAML: {exc}") from exc
    lines: dict[PathKey, int] = {}
    data = None
    if node is not None:
        _check_expansion(node, path)
        data = _Builder(path, lines).build(node, ())
    lines.setdefault((), 1)
    return YamlDocument(path=path, data=data, lines=lines)
