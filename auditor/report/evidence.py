"""Evidence as reports show it: "not found" answers that mean "there is none", and excerpts of raw
answers centred on the field that decided the finding.

The absent codes are each source's own table (`ABSENT_CODES` in its declaration module, the one the
scanner reads), found through the source registry; no cloud SDK is imported.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from auditor.sources import declaration_modules

EXCERPT_CHARS = 240
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]{2,}")


@cache
def absent_codes() -> dict[str, dict[str, frozenset[str]]]:
    """Per source name: operation -> the error codes that mean "there is none" (not an error)."""
    found: dict[str, dict[str, frozenset[str]]] = {}
    for module_name in declaration_modules():
        module = importlib.import_module(module_name)
        source = getattr(module, "SOURCE", None)
        codes = getattr(module, "ABSENT_CODES", None)
        if source is not None and isinstance(codes, dict):
            found[source.name] = dict(codes)
    return found


def is_absent(provider: str, call: str, error: str | None) -> bool:
    """Whether the failed `call` answered "there is none" (`NoSuchBucketPolicy`): an absent
    setting, not an unreadable one. `error` is the evidence's `Code: message` text."""
    if not error:
        return False
    operation = call.rpartition(":")[2]
    code = error.partition(":")[0].strip()
    return code in absent_codes().get(provider, {}).get(operation, frozenset())


@dataclass(frozen=True)
class Excerpt:
    """A raw answer cut to fit, with the span of the deciding field (`mark`) when found."""

    text: str
    mark: tuple[int, int] | None = None

    @property
    def parts(self) -> tuple[str, str, str]:
        """(before, deciding field, after); the middle is empty when no field was found."""
        if self.mark is None:
            return self.text, "", ""
        start, end = self.mark
        return self.text[:start], self.text[start:end], self.text[end:]


def _leaf_words(attribute: str) -> list[str]:
    """`transport.min_tls_version` -> ['min', 'tls', 'version']."""
    return [w for w in re.split(r"[._\-]", attribute.rpartition(".")[2].lower()) if w]


def _scalars(value: Any) -> Iterable[Any]:
    if isinstance(value, list):
        for item in value:
            yield from _scalars(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield value


def _field_span(text: str, start: int) -> tuple[int, int]:
    """The span of `"key":value` whose key starts at `start` (a value cut at `,` or `}`)."""
    depth = 0
    index = text.index(":", start) + 1
    in_string = False
    while index < len(text):
        char = text[index]
        if in_string:
            if char == "\\":
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            break
        index += 1
    return start, index


def _key_before(text: str, colon: int) -> int | None:
    """The start (its opening quote) of the key that ends just before `text[colon]` (a `:`)."""
    if colon < 2 or text[colon - 1] != '"':
        return None
    start = text.rfind('"', 0, colon - 1)
    return start if start >= 0 else None


def _fields_holding(text: str, needles: list[str]) -> list[int]:
    """Key starts of the fields whose whole value is one of `needles` (`1` is not `12`)."""
    found = []
    for needle in needles:
        at = text.find(":" + needle)
        while at >= 0:
            end = at + 1 + len(needle)
            start = _key_before(text, at) if end == len(text) or text[end] in ",}]" else None
            if start is not None:
                found.append(start)
            at = text.find(":" + needle, at + 1)
    return sorted(found)


def _keys_named(text: str, lowered: str, words: list[str]) -> list[int]:
    """Key starts of the keys that hold every one of `words` (case, `_` and `-` ignored)."""
    if not words:
        return []
    anchor = max(words, key=len)
    found = []
    at = lowered.find(anchor)
    while at >= 0:
        opening, closing = lowered.rfind('"', 0, at), lowered.find('"', at)
        if opening >= 0 and closing >= 0 and text.startswith('":', closing):
            key = lowered[opening + 1 : closing].replace("_", "").replace("-", "")
            if all(word in key for word in words) and opening not in found:
                found.append(opening)
        at = lowered.find(anchor, at + 1)
    return found


def deciding_span(
    text: str, observed: Mapping[str, Any], reasons: Iterable[str] = ()
) -> tuple[int, int] | None:
    """Where in the compact JSON `text` the field that decided the finding is: a key whose words
    are the attribute's (`minimumTlsVersion` for `min_tls_version`) and whose value is the observed
    one; else a field holding the observed value; else a key of the attribute's words; else a key a
    reason names (`minimumTlsVersion missing from the ARM answer`). Plain string searches: this runs
    for every piece of evidence of every listed finding."""
    lowered = text.lower()
    by_words: list[int] = []
    by_value: list[int] = []
    for attribute, value in observed.items():
        named = _keys_named(text, lowered, _leaf_words(attribute))
        valued = _fields_holding(text, [orjson.dumps(v).decode() for v in _scalars(value)])
        both = [start for start in named if start in valued]
        if both:
            return _field_span(text, both[0])
        by_words += named
        by_value += valued
    if by_value:
        return _field_span(text, by_value[0])
    if by_words:
        return _field_span(text, by_words[0])
    for reason in reasons:
        for word in _WORD.findall(reason):
            at = text.find(f'"{word}":')
            if at >= 0:
                return _field_span(text, at)
    return None


def excerpt(
    value: Any,
    observed: Mapping[str, Any] | None = None,
    reasons: Iterable[str] = (),
    limit: int = EXCERPT_CHARS,
) -> Excerpt:
    """Compact JSON of a raw API answer cut at `limit` characters, the cut placed so that the field
    that decided the finding (see `deciding_span`) is inside it and marked."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    span = deciding_span(text, observed, reasons) if observed is not None else None
    if len(text) <= limit:
        return Excerpt(text, span)
    if span is None or span[1] <= limit - 1:
        return Excerpt(text[: limit - 1] + "…", span)
    start, end = span
    end = min(end, start + limit - 2)  # a field longer than the excerpt: its start is what counts
    begin = max(0, min(start - (limit - (end - start)) // 2, len(text) - (limit - 2)))
    stop = begin + limit - 2
    head = "…" if begin > 0 else ""
    tail = "…" if stop < len(text) else ""
    return Excerpt(head + text[begin:stop] + tail, (start - begin + len(head), end - begin + len(head)))
