"""Errors for bad input: each names where (file:line or the argument) and what is wrong."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input (policy, waiver, inventory, parameter). The CLI exits 2 with `str(self)`."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message
