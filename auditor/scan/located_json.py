"""JSON with line numbers: the parser of ARM templates and parameters files, and the line locator
of CloudFormation JSON templates.

`parse_located` reads JSON text into plain Python values, except that every object is a
`LocatedDict` and every array a `LocatedList` carrying the 1-based line where it starts and the
line of each of its members, so a record's evidence and a `file:line` error can point into the
template. Nesting is bounded (`MAX_DEPTH`); a syntax error is an `InputError` naming its line.
`located_lines` flattens that into the line of every member by its path.
"""

from __future__ import annotations

import json
import re
from typing import Any

from auditor.errors import InputError

MAX_DEPTH = 128

# ARM accepts // and /* */ comments in templates (Azure CLI, PowerShell and the portal strip them).
_WHITESPACE_OR_COMMENTS = re.compile(r"(?:[ \t\n\r]+|//[^\n]*|/\*.*?\*/)*", re.DOTALL)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = (("true", True), ("false", False), ("null", None))


class LocatedDict(dict[str, Any]):
    """A JSON object with the line it starts on and the line of each key."""

    line: int
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        """The line of `key` (the object's own line when the key is absent)."""
        return self.key_lines.get(key, self.line)


class LocatedList(list[Any]):
    """A JSON array with the line it starts on and the line of each item."""

    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        """The line of item `index` (the array's own line when out of range)."""
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


def line_of(container: Any, key: str | int, default: int) -> int:
    """The line of `container[key]` when the container is located, else `default`."""
    if isinstance(container, LocatedDict) and isinstance(key, str):
        return container.line_of(key)
    if isinstance(container, LocatedList) and isinstance(key, int):
        return container.line_of(key)
    return default


class _Parser:
    def __init__(
        self, text: str, where: str, *, comments: bool, refuse_duplicates: bool, max_depth: int
    ) -> None:
        self.text = text
        self.where = where
        self.blank = _WHITESPACE_OR_COMMENTS if comments else _WHITESPACE
        self.refuse_duplicates = refuse_duplicates
        self.max_depth = max_depth
        self.pos = 0
        self.line = 1
        self._counted = 0  # the position up to which newlines are counted into `line`

    def fail(self, message: str) -> InputError:
        line = self._line_at(self.pos)
        if self.pos >= len(self.text):
            message = f"{message} at the end of the file; is the file truncated?"
            line = self.text.rstrip().count("\n") + 1  # the last line with text
        return InputError(f"{self.where}:{line}", f"invalid JSON: {message}")

    def _line_at(self, pos: int) -> int:
        if pos > self._counted:
            self.line += self.text.count("\n", self._counted, pos)
            self._counted = pos
        return self.line

    def skip(self) -> None:
        match = self.blank.match(self.text, self.pos)
        self.pos = match.end() if match else self.pos

    def value(self, depth: int) -> Any:
        self.skip()
        if self.pos >= len(self.text):
            raise self.fail("expected a value")
        char = self.text[self.pos]
        if char == "{":
            return self.object(depth + 1)
        if char == "[":
            return self.array(depth + 1)
        if char == '"':
            return self.string()
        for word, literal in _LITERALS:
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return literal
        match = _NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            token = match.group()
            return float(token) if any(c in token for c in ".eE") else int(token)
        raise self.fail(f"unexpected character {char!r}")

    def string(self) -> str:
        match = _STRING.match(self.text, self.pos)
        if not match:
            raise self.fail("unterminated or invalid string")
        self.pos = match.end()
        decoded: str = json.loads(match.group())
        return decoded

    def _enter(self, depth: int) -> int:
        if depth > self.max_depth:
            line = self._line_at(self.pos)
            raise InputError(f"{self.where}:{line}", f"nested deeper than {self.max_depth} levels")
        start = self._line_at(self.pos)
        self.pos += 1
        return start

    def object(self, depth: int) -> LocatedDict:
        result = LocatedDict()
        result.line = self._enter(depth)
        result.key_lines = {}
        self.skip()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            return result
        while True:
            self.skip()
            if not self.text.startswith('"', self.pos):
                raise self.fail("expected a property name in double quotes")
            key_line = self._line_at(self.pos)
            key = self.string()
            if self.refuse_duplicates and key in result:  # JSON parsers disagree on which value wins
                raise InputError(f"{self.where}:{key_line}", f"invalid JSON: duplicate key '{key}'")
            self.skip()
            if not self.text.startswith(":", self.pos):
                raise self.fail("expected ':' after a property name")
            self.pos += 1
            result[key] = self.value(depth)
            result.key_lines[key] = key_line
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return result
            raise self.fail("expected ',' or '}'")

    def array(self, depth: int) -> LocatedList:
        result = LocatedList()
        result.line = self._enter(depth)
        result.item_lines = []
        self.skip()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return result
        while True:
            self.skip()
            result.item_lines.append(self._line_at(self.pos))
            result.append(self.value(depth))
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return result
            raise self.fail("expected ',' or ']'")


def parse_located(
    text: str,
    where: str,
    *,
    comments: bool = True,
    refuse_duplicates: bool = False,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """The JSON document `text` with located objects and arrays (InputError `where:line` if invalid).

    `comments`: accept // and /* */ (ARM does); `refuse_duplicates`: a key given twice is bad input.
    """
    parser = _Parser(text, where, comments=comments, refuse_duplicates=refuse_duplicates, max_depth=max_depth)
    result = parser.value(0)
    parser.skip()
    if parser.pos < len(text):
        raise parser.fail("unexpected text after the document")
    return result


def located_lines(value: Any) -> dict[tuple[str | int, ...], int]:
    """The line of every member of a parsed document by its path (the root at `()`)."""
    lines: dict[tuple[str | int, ...], int] = {
        (): value.line if isinstance(value, LocatedDict | LocatedList) else 1
    }
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        members: list[tuple[str | int, int, Any]] = []
        if isinstance(item, LocatedDict):
            members = [(key, item.key_lines[key], child) for key, child in item.items()]
        elif isinstance(item, LocatedList):
            members = [(index, item.item_lines[index], child) for index, child in enumerate(item)]
        for key, line, child in members:
            lines[(*path, key)] = line
            stack.append((child, (*path, key)))
    return lines
