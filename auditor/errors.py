"""Errors for bad input: each names where (file:line or the argument) and what is wrong.

Also `visible`: text from files and clouds shown with control and bidi characters made visible,
used by every report and by the error line itself (a hostile file name or YAML key must not move
the cursor, recolour the terminal, reverse the text around it, or add lines to the one-line error).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# C0 controls except tab and newline, DEL, C1 controls, and the invisible characters that reorder or
# separate text: Arabic letter mark, LRM/RLM, line/paragraph separators, bidi embeddings, overrides
# and isolates (U+202A-202E, U+2066-2069).
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _show(match: re.Match[str]) -> str:
    return f"<U+{ord(match.group()):04X}>"


def visible(text: str) -> str:
    """`text` with control and bidi characters (not tab, not newline) written as `<U+XXXX>`."""
    return _HIDDEN.sub(_show, text) if _HIDDEN.search(text) else text


def one_line(text: str) -> str:
    """`visible(text)` on a single line: newlines become spaces, a lone CR is shown, tabs stay."""
    return visible(text.replace("\r\n", " ").replace("\n", " ") if "\n" in text else text)


class InputError(Exception):
    """Bad user input (policy, waiver, inventory, parameter). The CLI exits 2 with `str(self)`.

    `str(self)` is always one line with no control or bidi characters, whatever the input held.
    """

    def __init__(self, where: str, message: str) -> None:
        where, message = one_line(str(where)), one_line(str(message))
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message

    def lines(self) -> list[str]:
        """Each problem as one `where: message` line (here, the one)."""
        return [str(self)]


class InputErrors(InputError):
    """Several problems found in one pass over the input, reported together (exit 2).

    `str(self)` is the first; `lines()` gives every one, in the order they were found.
    """

    def __init__(self, errors: Sequence[InputError]) -> None:
        if not errors:
            raise ValueError("InputErrors needs at least one error")
        self.errors: list[InputError] = [each for error in errors for each in each_error(error)]
        first = self.errors[0]
        super().__init__(first.where, first.message)

    def lines(self) -> list[str]:
        return [str(error) for error in self.errors]


def each_error(error: InputError) -> list[InputError]:
    """The single problems `error` holds: itself, or each of an InputErrors."""
    return list(error.errors) if isinstance(error, InputErrors) else [error]


def raise_all(errors: Sequence[InputError]) -> None:
    """Raise nothing for no errors, the error itself for one, InputErrors for several."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InputErrors(errors)
