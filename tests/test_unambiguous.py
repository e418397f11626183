"""`auditor._unambiguous.unambiguous_object`, the one-pass proof `auditor.fast_decode` trusts.

Its promise (soundness): True only for one JSON object that orjson, msgspec and the standard
library all read, to the same value, with no repeated key in any object. Each thing it must not
prove (a repeated or escaped key, an exponent, a run of 19 digits, a surrogate escape, bad UTF-8,
deeper than 64, more than 64 keys, anything that is not one object) is refused wherever it appears,
and texts without them are proven (completeness: every demo line, thousands of generated records in
any spacing and escaping). Hostile texts end in bounded time. Each test runs on the module as
installed and on the module compiled again for the machines without SSE2 (8 bytes at a time, as on
ARM) and for those that are not little-endian (a byte at a time).
"""

from __future__ import annotations

import importlib.util
import json
import random
import shlex
import subprocess
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from auditor.fast_decode import UNAMBIGUOUS
from auditor.inventory import check_duplicate_keys

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "demo-estate.jsonl"
SOURCE = REPO / "auditor" / "_unambiguous.c"


def test_the_extension_is_built() -> None:
    # CI installs a C compiler and Python's headers (.ci/run); without them hatch_build.py builds
    # auditor without the module and the fast decoder makes its own proofs. Fail loudly here.
    assert UNAMBIGUOUS is not None, "auditor._unambiguous is not built: install with gcc and python3-dev"


Scanner = Callable[[bytes], bool]

# The scan reads strings 16 bytes at a time with SSE2 (x86-64), else 8 at a time (other
# little-endian machines, e.g. ARM), else a byte at a time. Each is compiled and tested here.
VARIANTS = {
    "as built": [],
    "8 bytes at a time": ["-U__SSE2__"],
    "a byte at a time": ["-U__SSE2__", "-U__BYTE_ORDER__"],
}


def _compiled(flags: list[str], directory: Path) -> Scanner:
    """auditor/_unambiguous.c compiled with `flags` into `directory`, loaded from there."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = directory / f"_unambiguous{suffix}"
    command = [
        *shlex.split(sysconfig.get_config_var("LDSHARED")),
        *shlex.split(sysconfig.get_config_var("CCSHARED") or ""),
        "-O2",
        "-std=c99",
        f"-I{sysconfig.get_paths()['include']}",
        *flags,
        str(SOURCE),
        "-o",
        str(target),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    spec = importlib.util.spec_from_file_location("auditor._unambiguous", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scanner: Scanner = module.unambiguous_object
    return scanner


@pytest.fixture(scope="module", params=list(VARIANTS))
def proven(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Scanner:
    """`unambiguous_object` as installed, and compiled again without SSE2 and word-wise reads."""
    if not VARIANTS[request.param]:
        assert UNAMBIGUOUS is not None
        return UNAMBIGUOUS
    return _compiled(VARIANTS[request.param], tmp_path_factory.mktemp("unambiguous"))


# --- what every parser reads ------------------------------------------------------------------


def _refuse_constant(name: str) -> None:
    raise ValueError(name)


def _typed(value: Any) -> Any:
    """`value` with its types spelled out (1, 1.0 and True compare apart)."""
    if isinstance(value, dict):
        return ("dict", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value), value)


def agreed_reading(text: bytes) -> Any:
    """The value orjson, msgspec and the standard library (refusing NaN and Infinity) all read
    from `text`, which the reference path's check finds no repeated key in; raises naming the
    disagreement."""
    via_orjson = orjson.loads(text)
    check_duplicate_keys(text, via_orjson, "text")
    via_msgspec = msgspec.json.decode(text)
    via_json = json.loads(text, parse_constant=_refuse_constant)
    assert _typed(via_orjson) == _typed(via_msgspec), "orjson and msgspec read it differently"
    assert _typed(via_orjson) == _typed(via_json), "orjson and the standard library read it differently"
    return via_orjson


def assert_sound(proven: Scanner, text: bytes) -> None:
    """If `text` is proven, every parser reads it alike, as an object, without repeated keys."""
    if proven(text):
        try:
            value = agreed_reading(text)
        except Exception as exc:
            raise AssertionError(f"proven but not read alike ({exc!r}): {text[:300]!r}") from exc
        assert isinstance(value, dict), text[:300]


# --- generated clean records ------------------------------------------------------------------

_KEY_CHARS = "abcdefghijklmnopqrstuvwxyz_-.:/ 0123456789ÄéßЖ中🙂"
_VALUE_CHARS = _KEY_CHARS + '"\\\n\t\x00\x1f\x7f/\u2028'


def _string(rng: random.Random, chars: str, longest: int) -> str:
    return "".join(rng.choice(chars) for _ in range(rng.randint(0, longest)))


def _number(rng: random.Random) -> int | float:
    if rng.random() < 0.6:
        return rng.choice([0, -1, 1]) * rng.randint(0, 10 ** rng.randint(0, 18) - 1)
    whole = rng.randint(0, 10 ** rng.randint(1, 9))
    fraction = rng.randint(1, 10 ** rng.randint(1, 8))
    return float(f"{rng.choice(['', '-'])}{whole}.{fraction}")


def clean_value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value with nothing the proof refuses (distinct plain keys, short numbers, shallow)."""
    roll = rng.random()
    if depth < 5 and roll < 0.25:
        keys = {_string(rng, _KEY_CHARS, 12) for _ in range(rng.randint(0, 8))}
        return {key: clean_value(rng, depth + 1) for key in keys}
    if depth < 5 and roll < 0.4:
        return [clean_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    if roll < 0.7:
        return _string(rng, _VALUE_CHARS, 40)
    if roll < 0.9:
        return _number(rng)
    return rng.choice([True, False, None])


def _space(rng: random.Random) -> str:
    return "" if rng.random() < 0.7 else "".join(rng.choice(" \t\n\r") for _ in range(rng.randint(1, 3)))


def _escaped_string(rng: random.Random, text: str, *, key: bool) -> str:
    """`text` as a JSON string; in values, characters may be escaped in any allowed spelling."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\' or code < 0x20:
            out.append(json.dumps(char)[1:-1])
        elif not key and code < 0xD800 and rng.random() < 0.1:
            out.append(f"\\u{code:04x}" if rng.random() < 0.5 else f"\\u{code:04X}")
        elif not key and char == "/" and rng.random() < 0.5:
            out.append("\\/")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


class Verbatim(str):
    """Rendered as it is: a literal the proof must refuse."""


class Pairs(list[tuple[str, Any]]):
    """An object rendered from its pairs, which may repeat a key."""


def render(rng: random.Random, value: Any) -> str:
    """`value` as JSON text with random spacing and escapes (never in keys)."""
    if isinstance(value, Verbatim):
        return str(value)
    if isinstance(value, dict | Pairs):
        items = value.items() if isinstance(value, dict) else value
        pairs = [
            f"{_space(rng)}{_escaped_string(rng, k, key=True)}{_space(rng)}:{_space(rng)}{render(rng, v)}{_space(rng)}"
            for k, v in items
        ]
        return "{" + ",".join(pairs) + _space(rng) + "}"
    if isinstance(value, list):
        return (
            "[" + ",".join(f"{_space(rng)}{render(rng, v)}{_space(rng)}" for v in value) + _space(rng) + "]"
        )
    if isinstance(value, str):
        return _escaped_string(rng, value, key=False)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


def clean_records(seed: int, count: int) -> Iterator[tuple[dict[str, Any], bytes]]:
    rng = random.Random(seed)
    for _ in range(count):
        value = clean_value(rng)
        record = value if isinstance(value, dict) else {"value": value}
        yield record, (_space(rng) + render(rng, record) + _space(rng)).encode()


def test_clean_records_are_proven_and_read_as_generated(proven: Scanner) -> None:
    for record, text in clean_records(seed=20261130, count=3000):
        assert proven(text), text[:500]
        assert _typed(agreed_reading(text)) == _typed(record)


def test_every_demo_line_is_proven(proven: Scanner) -> None:
    lines = [line for line in DEMO.read_bytes().splitlines(keepends=True) if line.strip()]
    assert len(lines) > 60
    for line in lines:
        assert proven(line), line[:200]
        assert_sound(proven, line)


# --- what it must refuse ----------------------------------------------------------------------

# Values the proof refuses wherever they are (as a value, or as a pair where they are keys).
REFUSED_VALUES = {
    "exponent": Verbatim("1e5"),
    "negative exponent": Verbatim("-2.5E-3"),
    "19-digit integer": Verbatim("1234567890123456789"),
    "19-digit fraction": Verbatim("0.1234567890123456789"),
    "surrogate escape": Verbatim('"a\\udc00"'),
    "invalid UTF-8": Verbatim('"a\udcff"'),  # written as the lone byte 0xff (surrogateescape)
    "raw control character": Verbatim('"a\x01"'),
    "NaN": Verbatim("NaN"),
    "trailing comma": Verbatim("[1,]"),
    "too deep": Verbatim("[" * 65 + "]" * 65),
}


def _containers(value: Any) -> Iterator[Any]:
    if isinstance(value, dict | list):
        yield value
        for item in value.values() if isinstance(value, dict) else value:
            yield from _containers(item)


def _with(rng: random.Random, record: dict[str, Any], bad: Any, *, repeat_key: bool = False) -> Any:
    """`record` with `bad` put into one of its objects or arrays (or a key of an object repeated)."""
    record = json.loads(json.dumps(record))
    objects = [c for c in _containers(record) if isinstance(c, dict) and c]
    if repeat_key:
        target = rng.choice(objects)
        key = rng.choice(list(target))
        pairs = Pairs(list(target.items()))
        pairs.insert(rng.randrange(len(pairs) + 1), (key, bad))
        return _replace(record, target, pairs)
    target = rng.choice(list(_containers(record)))
    if isinstance(target, dict):
        target["zz-bad"] = bad
    else:
        target.insert(rng.randrange(len(target) + 1), bad)
    return record


def _replace(value: Any, old: Any, new: Any) -> Any:
    if value is old:
        return new
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    return value


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("kind", [*REFUSED_VALUES, "repeated key", "escaped key"])
def test_refused_wherever_it_appears(kind: str, proven: Scanner) -> None:
    rng = random.Random(kind)
    for record, _ in clean_records(seed=5, count=300):
        if kind == "repeated key":
            if not any(isinstance(c, dict) and c for c in _containers(record)):
                continue
            bad = _with(rng, record, 1, repeat_key=True)
        elif kind == "escaped key":
            bad = _with(rng, record, {"\n": 1})  # the key is written as the escape \n
        else:
            bad = _with(rng, record, REFUSED_VALUES[kind])
        text = _encode(render(rng, bad))
        assert not proven(text), (kind, text[:400])


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1,"a":2}',
        b'{"a":1,"b":{"c":1,"c":1}}',
        b'{"x":[{"k":1,"j":2,"k":3}]}',
        b'{"\xc3\xa4":1,"\xc3\xa4":2}',  # non-ASCII keys compare as their UTF-8 bytes
        b'{"a":1,"\\u0061":2}',  # an escaped key is never proven, repeated or not
        b'{"\\n":1}',
        b'{"a":1e5}',
        b'{"a":1E5}',
        b'{"a":2.5e-3}',
        b'{"a":-0e0}',
        b'{"a":1234567890123456789}',  # 19 digits
        b'{"a":-1234567890123456789}',
        b'{"a":0.1234567890123456789}',
        b'{"a":1234567890123456789.5}',
        b'{"a":"\\ud800"}',
        b'{"a":"\\udfff"}',
        b'{"a":"\\ud83d\\ude42"}',  # a pair is valid JSON; surrogate escapes are simply not proven
        b'{"a":"\\uD800"}',
        b'{"a":"\xff"}',
        b'{"a":"\xc0\x80"}',  # overlong
        b'{"a":"\xe0\x80\x80"}',  # overlong
        b'{"a":"\xed\xa0\x80"}',  # a surrogate in UTF-8
        b'{"a":"\xf4\x90\x80\x80"}',  # above U+10FFFF
        b'{"a":"\xf5\x80\x80\x80"}',
        b'{"a":"\x80"}',
        b'{"a":"\xe2\x82"}',  # truncated
        b'{"a":"x\x01"}',
        b'{"a":"x\n"}',
        b'{"a":"x\x00"}',
        b'{"a":"\\x"}',
        b'{"a":"\\u12"}',
        b'{"a":"\\u12g4"}',
        b"[]",
        b'"a"',
        b"1",
        b"null",
        b"",
        b" \n",
        b"{",
        b"}",
        b'{"a"}',
        b'{"a":}',
        b'{"a":1,}',
        b'{,"a":1}',
        b'{"a":1 "b":2}',
        b'{"a":[1,]}',
        b'{"a":[,1]}',
        b'{"a":[1 2]}',
        b'{"a":01}',
        b'{"a":-01}',
        b'{"a":+1}',
        b'{"a":.5}',
        b'{"a":1.}',
        b'{"a":-}',
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":-Infinity}',
        b'{"a":tru}',
        b'{"a":truee}',
        b'{"a":nul}',
        b'{"a":True}',
        b"{'a':1}",
        b'{"a":1}x',
        b'{"a":1}{}',
        b'{"a":1}\x00',
        b'\x00{"a":1}',
        b'{"a":1\x00}',
        b'{"a":"x"\x0b}',  # vertical tab is not JSON whitespace
        b'\xef\xbb\xbf{"a":1}',  # a byte order mark
    ],
)
def test_refused(text: bytes, proven: Scanner) -> None:
    assert not proven(text)


def _nested(depth: int) -> bytes:
    inner = b"1"
    for level in range(depth - 1):
        inner = b"[" + inner + b"]" if level % 2 else b'{"k":' + inner + b"}"
    return b'{"k":' + inner + b"}"


def test_nesting_is_proven_to_64_levels_and_refused_beyond(proven: Scanner) -> None:
    assert proven(_nested(64))
    assert not proven(_nested(65))
    assert_sound(proven, _nested(64))


def _keys(count: int) -> bytes:
    return ("{" + ",".join(f'"k{i}":{i}' for i in range(count)) + "}").encode()


def test_an_object_is_proven_to_64_keys_and_refused_beyond(proven: Scanner) -> None:
    assert proven(_keys(64))
    assert not proven(_keys(65))
    # The limit is per object: 64 objects of 16 keys each are 1,024 keys open in all, which is fine.
    many = ("{" + ",".join(f'"o{i}":{_keys(16).decode()}' for i in range(40)) + "}").encode()
    assert proven(many)


def test_keys_alike_in_length_and_last_byte_are_told_apart(proven: Scanner) -> None:
    # The filter in `repeated` keys on length and last byte: these all collide in it.
    assert proven(b'{"ab":1,"cb":2,"xb":3,"b":4,"":5,"bb":6}')
    assert not proven(b'{"ab":1,"cb":2,"ab":3}')
    assert not proven(b'{"":1,"":2}')
    assert proven(b'{"a":{"a":{"a":1}},"b":{"a":2}}')  # the same key in nested objects


@pytest.mark.parametrize("length", range(0, 40))
def test_every_position_of_short_and_long_strings(length: int, proven: Scanner) -> None:
    """Special bytes at each position of strings crossing the 16-byte blocks the scan reads."""
    for position in range(length):
        body = bytearray(b"x" * length)
        for special, ok in (
            (b"\xc3\xa9", True),
            (b"\\n", True),
            (b'\\"', True),
            (b"\\u00e9", True),
            (b"\x01", False),
            (b"\xff", False),
            (b"\\ud800", False),
            (b'"', False),  # ends the string early: what follows is not JSON
        ):
            text = b'{"a":"' + bytes(body[:position]) + special + bytes(body[position:]) + b'"}'
            assert proven(text) is ok, text
            assert_sound(proven, text)
        unterminated = b'{"a":"' + bytes(body)
        assert not proven(unterminated)


# --- nothing refused by mistake, nothing proven by mistake ------------------------------------


def _mutations(rng: random.Random, text: bytes) -> Iterator[bytes]:
    data = bytearray(text)
    yield bytes(data[: rng.randrange(len(data))])
    for _ in range(3):
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] = rng.randrange(256)
        yield bytes(flipped)
    at = rng.randrange(len(data))
    yield bytes(data[:at] + bytes([rng.choice(b'{}[]",:\\ 0-e.tfn\x00\x80')]) + data[at:])
    at = rng.randrange(len(data))
    yield bytes(data[:at] + data[at + 1 :])


def test_random_corruptions_are_never_proven_wrongly(proven: Scanner) -> None:
    rng = random.Random(7)
    checked = proven_count = 0
    for _, text in clean_records(seed=99, count=1500):
        for mutated in _mutations(rng, text):
            checked += 1
            proven_count += proven(mutated)
            assert_sound(proven, mutated)
    # Not vacuous: some corruptions stay valid JSON (a changed digit or letter) and are proven.
    assert checked > 8000
    assert proven_count > 500, proven_count


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("deep arrays", lambda: b'{"a":' + b"[" * 5_000_000),
        ("deep objects", lambda: b'{"a":' * 1_000_000),
        ("many keys", lambda: _keys(200_000)),
        ("a long string", lambda: b'{"a":"' + b"x" * 50_000_000 + b'"}'),
        ("long numbers", lambda: b'{"a":[' + b"1," * 5_000_000 + b"1]}"),
    ],
)
def test_hostile_texts_end_quickly(name: str, make: Callable[[], bytes], proven: Scanner) -> None:
    text = make()
    expected = name in ("a long string", "long numbers")
    assert proven(text) is expected, name


def test_only_bytes_are_read() -> None:
    assert UNAMBIGUOUS is not None
    for wrong in ('{"a":1}', bytearray(b'{"a":1}'), memoryview(b'{"a":1}'), None):
        with pytest.raises(TypeError):
            UNAMBIGUOUS(wrong)  # type: ignore[arg-type]
