"""JSON with line numbers: the parser of ARM templates and parameters files.

`parse_located` reads JSON text into plain Python values, except that every object is a
`LocatedDict` and every array a `LocatedList` carrying the 1-based line where it starts and the
line of each of its members, so a record's evidence and a `file:line` error can point into the
template. Nesting is bounded (`MAX_DEPTH`); a syntax error is an `InputError` naming its line.
"""

from __future__ import annotations

import json
import re
from typing import Any

from auditor.errors import InputError

MAX_DEPTH = 128

# ARM accepts // and /* */ comments in templates (Azure CLI, PowerShell and the portal strip them).
_WHITESPACE = re.compile(r"(?:[ \t\n\r]+|//[^\n]*|/\*.*?\*/)*", re.DOTALL)
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
    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
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
        match = _WHITESPACE.match(self.text, self.pos)
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
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
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


def parse_located(text: str, where: str) -> Any:
    """The JSON document `text` with located objects and arrays (InputError `where:line` if invalid)."""
    parser = _Parser(text, where)
    result = parser.value(0)
    parser.skip()
    if parser.pos < len(text):
        raise parser.fail("unexpected text after the document")
    return result
