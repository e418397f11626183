"""Stub of the C module auditor/_unambiguous.c (built at install where a C compiler is present)."""

def unambiguous_object(text: bytes, /) -> bool:
    """True when `text` is one JSON object every parser reads alike; False when not proven."""
