"""`auditor.fast_decode.RecordDecoder` against pydantic: a differential test of `parse_record`.

The fast path (`parse_record(line, where, fast=True)`) may return a msgspec struct mirroring
`StorageResource`; its promise is that it never accepts a line pydantic rejects and that, when it
accepts one, the struct holds the same fields with the same values (and types) as the pydantic
record, with the same `evidence_texts()`. Checked on the demo estate, on the inventories the IaC
scanners make of the fixtures, on seeded random mutations of demo records, on duplicate keys, on
`model_fields_set`, and on the models the decoder must refuse to derive.
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from unittest import mock

import msgspec
import orjson
import pytest
from click.testing import CliRunner
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from auditor import inventory
from auditor.attestations import with_expired_attestations
from auditor.cli import cli
from auditor.errors import InputError
from auditor.fast_decode import UNAMBIGUOUS, RecordDecoder
from auditor.inventory import parse_record
from auditor.model import StorageResource, Transport
from auditor.strict import StrictModel

REPO = Path(__file__).resolve().parents[1]
DEMO_INVENTORY = REPO / "fixtures" / "demo-estate.jsonl"
IAC = REPO / "fixtures" / "iac"
WHERE = "f:1"
PREFIX = b'{"record":"resource"'
ATTESTED = b'"attestation":'


# --- comparable forms -------------------------------------------------------------------------


def _is_struct(value: Any) -> bool:
    return hasattr(value, "__struct_fields__")


def mirror(value: Any) -> Any:
    """`value` (a pydantic model or the msgspec struct mirroring one, recursively) as plain data
    that compares equal only when names, types and values all agree (dict order included)."""
    if _is_struct(value):
        return _object(value, tuple(value.__struct_fields__))
    if isinstance(value, msgspec.Raw):  # a payload kept as JSON text: what the reference parser reads
        return mirror(orjson.loads(bytes(value)))
    if isinstance(value, BaseModel):
        return _object(value, tuple(type(value).model_fields))
    if isinstance(value, list):
        return ("list", [mirror(item) for item in value])
    if isinstance(value, tuple):
        return ("tuple", [mirror(item) for item in value])
    if isinstance(value, dict):
        return ("dict", [(mirror(key), mirror(item)) for key, item in value.items()])
    if isinstance(value, datetime):
        # Equal datetimes may differ in offset: compare the instant, the offset and the spelling.
        tz = value.tzinfo
        return (datetime, value, value.utcoffset(), type(tz).__name__, value.isoformat())
    return (type(value), value)


def _object(value: Any, names: tuple[str, ...]) -> dict[str, Any]:
    form: dict[str, Any] = {
        "class": type(value).__name__,
        "fields": {name: mirror(getattr(value, name)) for name in names},
    }
    if type(value).__name__ == Transport.__name__:
        form["model_fields_set"] = sorted(value.model_fields_set)
    return form


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two mirrors first differ (for readable failures)."""
    if a == b:
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}.{key}: only on one side"
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
    if (
        isinstance(a, tuple)
        and isinstance(b, tuple)
        and len(a) == len(b) == 2
        and a[0] == b[0]
        and isinstance(a[1], list)
        and isinstance(b[1], list)
    ):
        if len(a[1]) != len(b[1]):
            return f"{path}: {len(a[1])} vs {len(b[1])} items"
        for index, (x, y) in enumerate(zip(a[1], b[1], strict=True)):
            found = first_difference(x, y, f"{path}[{index}]")
            if found:
                return found
    return f"{path}: {a!r} != {b!r}"


# --- reading a line both ways -----------------------------------------------------------------


def read(line: bytes, *, fast: bool, evidence_texts: bool = True) -> tuple[Any, ...]:
    """The outcome of `parse_record`: ("error", message), or ("record", is-struct, mirror, texts)."""
    try:
        record = parse_record(line, WHERE, fast=fast, evidence_texts=evidence_texts)
    except InputError as exc:
        return ("error", str(exc))
    except Exception as exc:  # a crash is a mismatch too (pydantic's path only raises InputError)
        return ("crash", repr(exc))
    texts = record.evidence_texts() if isinstance(record, StorageResource) or _is_struct(record) else None
    tags = record.normalized_tags if texts is not None else None
    return ("record", _is_struct(record), mirror(record), texts, tags)


# The decoder as built without auditor._unambiguous (no C compiler at install): it makes its own
# proofs, for the line-kept reads too.
_WITHOUT_THE_PROOF = RecordDecoder(
    StorageResource, texts_of="evidence", track_given=frozenset({Transport}), unambiguous=None
)


def read_without_the_proof(line: bytes) -> tuple[Any, ...]:
    with mock.patch.object(inventory, "_FAST_RESOURCE", _WITHOUT_THE_PROOF):
        return read(line, fast=True, evidence_texts=False)


def expected_texts(line: bytes) -> list[bytes]:
    return [orjson.dumps(item) for item in orjson.loads(line).get("evidence") or []]


def compare(line: bytes) -> tuple[str | None, tuple[Any, ...], tuple[Any, ...]]:
    """(None if both paths agree else why, slow outcome, fast outcome); the fast path is read with
    its item texts and with the line kept instead (`evidence_texts=False`), with and without
    auditor._unambiguous, which must all agree."""
    slow, fast = read(line, fast=False), read(line, fast=True)
    line_kept = read(line, fast=True, evidence_texts=False)
    # Either may be a struct where the other is pydantic's record (the line-kept read has its own
    # proof, auditor._unambiguous); what they hold must agree.
    if _without_kind(line_kept) != _without_kind(fast):
        return "reading with the line kept differs from reading with item texts", fast, line_kept
    unproven = read_without_the_proof(line)
    if _without_kind(unproven) != _without_kind(fast):
        return "reading with the line kept but without auditor._unambiguous differs", fast, unproven
    if slow[0] == "record" and slow[1]:
        return "the reference path returned a struct", slow, fast
    if slow[0] != "record" or fast[0] != "record":
        return (None if slow == fast else f"outcomes differ: {slow[:2]} vs {fast[:2]}"), slow, fast
    difference = first_difference(slow[2], fast[2])
    if difference:
        return f"records differ at {difference}", slow, fast
    if slow[3] != fast[3]:
        pairs = [(a, b) for a, b in zip(slow[3] or [], fast[3] or [], strict=False) if a != b]
        return f"evidence_texts differ, first: {pairs[:1] or (slow[3], fast[3])}", slow, fast
    if slow[4] != fast[4]:
        return "normalized_tags differ", slow, fast
    if slow[3] is not None and slow[3] != expected_texts(line):
        return "evidence_texts are not orjson.dumps of the items as read", slow, fast
    return None, slow, fast


def _without_kind(outcome: tuple[Any, ...]) -> tuple[Any, ...]:
    return outcome[:1] + outcome[2:] if outcome[0] == "record" else outcome


def assert_same(line: bytes) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    problem, slow, fast = compare(line)
    assert problem is None, f"{problem}\nline: {line!r}"
    return slow, fast


# --- the fixtures -----------------------------------------------------------------------------


def demo_lines() -> list[bytes]:
    return [line for line in DEMO_INVENTORY.read_bytes().splitlines(keepends=True) if line.strip()]


def fast_candidates(lines: list[bytes]) -> list[bytes]:
    """The lines the fast path is offered: resources without attested evidence."""
    return [line for line in lines if line.startswith(PREFIX) and ATTESTED not in line]


@pytest.fixture(scope="module")
def iac_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The inventories the terraform, cloudformation and ARM scanners make of the fixtures."""
    out = tmp_path_factory.mktemp("iac")
    terraform = sorted(str(p) for p in (IAC / "terraform").glob("*/plan.json") if p.parent.name != "bad")
    scans = {
        "terraform": terraform,
        "cloudformation": [
            str(IAC / "cloudformation" / name)
            for name in ("data-lake.yaml", "reporting.json", "dr-us-east-1.yaml")
        ]
        + ["--region", "eu-west-1"],
        "arm": [
            str(IAC / "arm" / name)
            for name in (
                "bicep-symbolic.json",
                "customer-managed-key.json",
                "nested-legacy.json",
                "storage-blob-container.json",
                "unresolvable.json",
            )
        ],
    }
    lines: list[bytes] = []
    for source, args in scans.items():
        inventory = out / f"{source}.jsonl"
        result = CliRunner().invoke(cli, ["scan", source, *args, "--no-progress", "-o", str(inventory)])
        assert result.exit_code == 0, (source, result.output, result.exception)
        lines += [line for line in inventory.read_bytes().splitlines(keepends=True) if line.strip()]
    return lines


def _assert_fixture_lines(lines: list[bytes], *, minimum: int) -> None:
    candidates = fast_candidates(lines)
    assert len(candidates) >= minimum
    structs = 0
    for line in lines:
        slow, fast = assert_same(line)
        assert slow[0] == "record", slow
        if line in candidates:
            structs += fast[1]
            assert slow[3] == expected_texts(line)
        else:
            assert not fast[1], "an attested or non-resource line must be read by pydantic"
    # Not vacuous: the fast path really produced the structs it compared equal, and with the line
    # kept they were read through auditor._unambiguous's proof.
    assert structs >= 0.9 * len(candidates), (structs, len(candidates))
    assert UNAMBIGUOUS is not None
    proven = [line for line in candidates if UNAMBIGUOUS(line)]
    assert len(proven) >= 0.9 * len(candidates), (len(proven), len(candidates))
    assert all(read(line, fast=True, evidence_texts=False)[1] for line in proven)


def test_demo_estate_reads_the_same_on_both_paths() -> None:
    _assert_fixture_lines(demo_lines(), minimum=60)


def test_iac_fixture_inventories_read_the_same_on_both_paths(iac_lines: list[bytes]) -> None:
    _assert_fixture_lines(iac_lines, minimum=40)


def test_mirror_sees_types_offsets_and_order() -> None:
    """The comparison itself is sharp: it tells 1 from 1.0 and True, equal instants at other
    offsets, dict orders, and a struct from a model of another class."""
    assert mirror(1) != mirror(1.0)
    assert mirror(1) != mirror(True)
    assert mirror("1") != mirror(1)
    utc = datetime.fromisoformat("2026-11-24T06:00:00+00:00")
    shifted = datetime.fromisoformat("2026-11-24T11:30:00+05:30")
    assert utc == shifted and mirror(utc) != mirror(shifted)
    assert mirror({"a": 1, "b": 2}) != mirror({"b": 2, "a": 1})
    line = fast_candidates(demo_lines())[0]
    slow, fast = parse_record(line, WHERE), parse_record(line, WHERE, fast=True)
    assert isinstance(slow, StorageResource) and _is_struct(fast)
    assert mirror(slow) == mirror(fast)
    assert slow.transport is not None and fast.transport is not None
    fast.transport.min_tls_version = "1.3"
    assert mirror(slow) != mirror(fast)


# --- seeded random mutations ------------------------------------------------------------------

Path_ = tuple[Any, ...]
SENTINEL = "@@raw-literal@@"

ODD_DATETIMES: list[Any] = [
    "2026-11-24 06:00:00Z",
    "2026-11-24T06:00:00",
    "2026-11-24T06:00:00+05:30",
    "2026-11-24T06:00:00-00:00",
    "2026-11-24T06:00:00.1234567Z",
    "2026-11-24T06:00:00.123Z",
    "2026-11-24T06:00Z",
    "2026-11-24T24:00:00Z",
    "2026-02-30T06:00:00Z",
    "2026-11-24",
    "20261124T060000Z",
    "2026-11-24t06:00:00z",
    " 2026-11-24T06:00:00Z",
    "1700000000",
    1700000000,
    1700000000.5,
    -1,
    "garbage",
    "",
    None,
    True,
]
ODD_DATES: list[Any] = [
    "2023-12-31",
    "2023-12-31T00:00:00",
    "2023-12-31T00:00:00Z",
    "2023-12-31T06:00:00Z",
    "20231231",
    "2023-02-30",
    "2023-12-31 ",
    "0001-01-01",
    "9999-12-31",
    1700000000,
    19722,
    0,
    "garbage",
    "",
    None,
    False,
]
PROVIDERS = [
    "aws\n",
    "aws\r",
    "\naws",
    "AWS",
    "a_b",
    "",
    "aws-",
    "1aws",
    "a",
    "gcp",
    "azure",
    "openai",
    "aws ",
]
KINDS = [
    "bucket",
    "container",
    "account",
    "ai-project",
    "Bucket",
    "bucket ",
    "blob",
    "",
    "ai_project",
    None,
    1,
]
LOCATION_TYPES = ["region", "global", "Region", "continent", "", None, 0]
KEY_MANAGEMENT = ["provider-managed", "customer-supplied", "customer_managed", "CUSTOMER", "", None, True]
UNKNOWN_CODES = ["access_denied", "expired", "ACCESS_DENIED", "access-denied", "nope", "", None, 3]
PARTIALS = ["members", "at_least", None, "none", "", "Members", 1, False]
# Raw JSON texts put where a value was (numbers inside evidence responses, strings anywhere).
NUMBER_LITERALS = [
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1000000000000000000000000000000",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"123456789012345678",
    b"1e20",
    b"1.5e-7",
    b"1E5",
    b"1e+16",
    b"-0",
    b"-0.0",
    b"0.000001",
    b"1.0",
    b"0.1",
    b"3.141592653589793",
    b"10000000000000000.0",
    b"123456789012345678.0",
    b"12345678901234567.25",
]
NUMBER_VALUES: list[Any] = [2**63 - 1, -(2**63), 1e20, 1.5e-7, 0.5, -0.0, 1.0, 7, True, None, "1e20"]
STRING_LITERALS = [
    b'"\\u00e9"',
    b'"\\ud83d\\ude00"',
    b'"\\/"',
    b'"a\\u003ab"',
    b'"\\u003A"',
    b'"\\ud800"',
    b'"\\udc00x"',
    b'"\\u0000"',
    b'"\\u2028"',
    b'"\\t\\n\\r\\b\\f"',
    b'"a\\"b\\\\"',
    b'"\\x41"',
    b'"\\U0041"',
    b'"\xff"',
    b'"\xed\xa0\x80"',
    b'"a\x01b"',
    b'"tab\there"',
    b'"\xc3\xa9"',
    b'"\\u0062ucket"',
    b'"\\u0061ws"',
]
STRINGS = [
    "é",
    "\u2028",
    "\x00",
    "\x1f",
    "\x7f",
    "\U0001f600",
    "\ufeff",
    'a"b',
    "a\\b",
    "</script>",
    "a:b",
    " ",
    "",
]


def paths(value: Any, here: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield here, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*here, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*here, index))


def get(record: Any, path: Path_) -> Any:
    for step in path:
        record = record[step]
    return record


def put(record: Any, path: Path_, value: Any) -> None:
    get(record, path[:-1])[path[-1]] = value


def _retyped(rng: random.Random, value: Any) -> Any:
    if isinstance(value, bool):
        return rng.choice(["true", "false", 1, 0, None, "yes", [value]])
    if isinstance(value, int):
        return rng.choice([float(value), str(value), None, True, value + 0.5, -1, 0, [value]])
    if isinstance(value, float):
        return rng.choice([int(value), str(value), None])
    if isinstance(value, str):
        return rng.choice([1, 0, None, True, [value], {"x": value}, value.upper(), value + " ", ""])
    if value is None:
        return rng.choice(["", 0, False, [], {}, "null", "None"])
    if isinstance(value, list):
        return rng.choice(["[]", None, {}, [None], [1], value[:1] * 2, "x"])
    return rng.choice([[], "x", None, {}, [value], 1])


class Mutated:
    """One mutated record: the data, and raw JSON texts to splice in for sentinels."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.raw: dict[str, bytes] = {}
        self.key_escapes: list[str] = []

    def raw_value(self, path: Path_, text: bytes) -> None:
        sentinel = f"{SENTINEL}{len(self.raw)}"
        self.raw[sentinel] = text
        put(self.data, path, sentinel)


def _pick(rng: random.Random, data: Any, accept: Callable[[Path_, Any], bool]) -> Path_ | None:
    found = [path for path, value in paths(data) if path and accept(path, value)]
    return rng.choice(found) if found else None


def m_retype(rng: random.Random, m: Mutated) -> None:
    path = _pick(rng, m.data, lambda p, v: True)
    if path is not None:
        put(m.data, path, _retyped(rng, get(m.data, path)))


def m_remove_key(rng: random.Random, m: Mutated) -> None:
    path = _pick(rng, m.data, lambda p, v: isinstance(p[-1], str))
    if rng.random() < 0.3:
        path = (rng.choice(list(m.data)),)
    if path is not None:
        del get(m.data, path[:-1])[path[-1]]


def m_null(rng: random.Random, m: Mutated) -> None:
    path = _pick(rng, m.data, lambda p, v: isinstance(p[-1], str) and v is not None)
    if path is not None:
        put(m.data, path, None)


def m_add_key(rng: random.Random, m: Mutated) -> None:
    choices: list[Path_] = [()]
    choices += [p for p, v in paths(m.data) if isinstance(v, dict) and p]
    evidence = m.data.get("evidence")
    if isinstance(evidence, list) and evidence:
        choices += [("evidence", i) for i in range(len(evidence))] * 3
    target = get(m.data, rng.choice(choices))
    if isinstance(target, dict):
        key = rng.choice(
            ["extra", "Record", "evidence_", "kind ", "_private", "model_fields_set", "é", "a:b"]
        )
        target[key] = rng.choice([1, "x", None, {"y": [1]}, [], True])


def m_literal(rng: random.Random, m: Mutated) -> None:
    d = m.data
    spot = rng.choice(["kind", "location.type", "key_management", "replica", "scope", "decided_by", "record"])
    if spot == "kind":
        d["kind"] = rng.choice(KINDS)
    elif spot == "record":
        d["record"] = rng.choice(["gap", "Resource", "resource ", None])
    elif spot == "location.type" and isinstance(d.get("location"), dict):
        d["location"]["type"] = rng.choice(LOCATION_TYPES)
    elif spot == "key_management" and isinstance(d.get("encryption"), dict):
        d["encryption"]["key_management"] = rng.choice(KEY_MANAGEMENT)
    elif spot == "replica" and isinstance(d.get("location"), dict):
        replica = {"region": "eu-west-1", "kind": rng.choice(["replication", "copy", "geo-secondary", ""])}
        d["location"]["replicas"] = [*d["location"].get("replicas", []), replica]
    elif spot == "scope" and isinstance(d.get("processing"), dict):
        d["processing"]["scope"] = rng.choice(["none", "data-zone", "Global", "planet", None])
    elif spot == "decided_by" and isinstance(d.get("training"), dict):
        d["training"]["decided_by"] = rng.choice(["attestation", "provider-default", "user", None])
    else:
        d["kind"] = rng.choice(KINDS)


def m_provider(rng: random.Random, m: Mutated) -> None:
    m.data["provider"] = rng.choice(PROVIDERS)


def m_datetime(rng: random.Random, m: Mutated) -> None:
    evidence = m.data.get("evidence")
    if rng.random() < 0.5 and isinstance(evidence, list) and evidence:
        put(m.data, ("evidence", rng.randrange(len(evidence)), "at"), rng.choice(ODD_DATETIMES))
    else:
        m.data["scanned_at"] = rng.choice(ODD_DATETIMES)


def m_date(rng: random.Random, m: Mutated) -> None:
    transport = m.data.get("transport")
    if isinstance(transport, dict) and rng.random() < 0.7:
        floor = transport.get("provider_floor")
        if not isinstance(floor, dict):
            floor = transport["provider_floor"] = {"version": "1.2", "since": None, "source": "https://x"}
        floor["since"] = rng.choice(ODD_DATES)
    else:
        training = m.data.setdefault("training", None)
        if not isinstance(training, dict):
            training = m.data["training"] = {
                "provider_may_train": False,
                "decided_by": "provider-default",
                "setting": None,
            }
        training["as_of"] = rng.choice(ODD_DATES)


def m_unknown(rng: random.Random, m: Mutated) -> None:
    entry: dict[str, Any] = {"code": rng.choice(UNKNOWN_CODES), "reason": rng.choice(["denied", "", 1, None])}
    if rng.random() < 0.6:
        entry["partial"] = rng.choice(PARTIALS)
    if rng.random() < 0.15:
        entry["extra"] = 1
    if rng.random() < 0.15:
        del entry[rng.choice(["code", "reason"])]
    unknown = m.data.get("unknown")
    if not isinstance(unknown, dict):
        unknown = m.data["unknown"] = {}
    unknown[rng.choice(["transport", "location.regions", "tags", "", "é"])] = (
        entry if rng.random() < 0.9 else rng.choice(["access_denied", None, []])
    )


def m_attributes(rng: random.Random, m: Mutated) -> None:
    evidence = m.data.get("evidence")
    if isinstance(evidence, list) and evidence and isinstance(evidence[0], dict):
        item = rng.choice(evidence)
        item["attributes"] = rng.choice(["location", ["location", 1], [], None, [None], {"a": 1}, ["é"]])


def m_number(rng: random.Random, m: Mutated) -> None:
    evidence = m.data.get("evidence")
    if not (isinstance(evidence, list) and evidence):
        evidence = m.data["evidence"] = [
            {"call": "x:Y", "at": "2026-11-24T06:00:00Z", "attributes": ["location"], "response": None}
        ]
    index = rng.randrange(len(evidence))
    item = evidence[index]
    if not isinstance(item, dict):
        return
    response = item.get("response")
    if isinstance(response, dict) and response and rng.random() < 0.5:
        path: Path_ = ("evidence", index, "response", rng.choice(list(response)))
    else:
        item["response"] = {"n": None}
        path = ("evidence", index, "response", "n")
    if rng.random() < 0.7:
        m.raw_value(path, rng.choice(NUMBER_LITERALS))
    else:
        put(m.data, path, rng.choice(NUMBER_VALUES))


def m_string(rng: random.Random, m: Mutated) -> None:
    path = _pick(rng, m.data, lambda p, v: isinstance(v, str) and p != ("record",))
    if path is None:
        return
    if rng.random() < 0.6:
        m.raw_value(path, rng.choice(STRING_LITERALS))
    else:
        value = get(m.data, path)
        put(m.data, path, rng.choice([value + rng.choice(STRINGS), rng.choice(STRINGS)]))


def m_escaped_key(rng: random.Random, m: Mutated) -> None:
    path = _pick(rng, m.data, lambda p, v: isinstance(p[-1], str) and p[-1] != "record" and p[-1] != "")
    if path is not None:
        m.key_escapes.append(path[-1])


def m_reorder(rng: random.Random, m: Mutated) -> None:
    path = _pick(rng, m.data, lambda p, v: isinstance(v, dict) and len(v) > 1)
    if path is not None:
        target = get(m.data, path)
        items = list(target.items())
        rng.shuffle(items)
        put(m.data, path, dict(items))


MUTATIONS: dict[str, Callable[[random.Random, Mutated], None]] = {
    "retype": m_retype,
    "remove-key": m_remove_key,
    "null": m_null,
    "add-key": m_add_key,
    "literal": m_literal,
    "provider": m_provider,
    "datetime": m_datetime,
    "date": m_date,
    "unknown": m_unknown,
    "attributes": m_attributes,
    "number": m_number,
    "string": m_string,
    "escaped-key": m_escaped_key,
}
WEIGHTS = [4, 3, 2, 2, 2, 1, 2, 1, 2, 1, 2, 3, 1]


def render(rng: random.Random, m: Mutated) -> bytes:
    """The record as a line: compact orjson, or json.dumps with spaces (the `{"record":"resource"`
    prefix mostly kept compact, so the fast path is still offered the line)."""
    style = rng.choice(["orjson", "orjson", "spaced", "ascii", "loose"])
    if style == "orjson":
        text = orjson.dumps(m.data)
    elif style == "spaced":
        text = json.dumps(m.data, ensure_ascii=False, separators=(", ", ": ")).encode()
    elif style == "ascii":
        text = json.dumps(m.data, separators=(",", ":")).encode()
    else:
        text = json.dumps(m.data, ensure_ascii=False, separators=(" ,\t", " : ")).encode()
    if rng.random() < 0.85:
        for spaced in (b'{"record": "resource", ', b'{"record" : "resource" ,\t'):
            if text.startswith(spaced):
                text = PREFIX + b"," + text[len(spaced) :]
    for sentinel, raw in m.raw.items():
        text = text.replace(json.dumps(sentinel).encode(), raw, 1)
    for key in m.key_escapes:
        spelled = json.dumps(key, ensure_ascii=False).encode()
        escaped = (f'"\\u{ord(key[0]):04x}' + json.dumps(key)[2:]).encode()
        text = text.replace(spelled + b":", escaped + b":", 1).replace(spelled + b" :", escaped + b" :", 1)
    return text + rng.choice([b"\n", b"", b"\n", b" \n"])


def mutated_lines(seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    records = [orjson.loads(line) for line in fast_candidates(demo_lines())]
    names = list(MUTATIONS)
    for _ in range(count):
        m = Mutated(copy.deepcopy(rng.choice(records)))
        applied = rng.choices(names, WEIGHTS, k=1 if rng.random() < 0.8 else 2)
        for name in applied:
            MUTATIONS[name](rng, m)
        if rng.random() < 0.15:
            m_reorder(rng, m)
            applied.append("reorder")
        yield "+".join(applied), render(rng, m)


def test_random_mutations_read_the_same_on_both_paths() -> None:
    outcomes: Counter[str] = Counter()
    mismatches: dict[str, list[tuple[str, bytes]]] = {}
    for name, line in mutated_lines(seed=20261124, count=3000):
        problem, slow, fast = compare(line)
        if problem is not None:
            mismatches.setdefault(name, []).append((problem, line))
            continue
        outcomes["error" if slow[0] == "error" else ("struct" if fast[1] else "pydantic")] += 1
    report = []
    for name, found in sorted(mismatches.items()):
        problem, line = min(found, key=lambda f: len(f[1]))
        report.append(f"{name}: {len(found)} mismatches; e.g. {problem[:600]}\n    line: {line[:3000]!r}")
    assert not mismatches, "\n".join(report)
    # Not vacuous: many lines were rejected, many decoded by the fast path, some left to pydantic.
    assert outcomes["error"] >= 600, outcomes
    assert outcomes["struct"] >= 600, outcomes
    assert outcomes["pydantic"] >= 100, outcomes


def test_mutations_are_deterministic() -> None:
    assert list(mutated_lines(seed=7, count=50)) == list(mutated_lines(seed=7, count=50))


# --- known edge cases, one at a time --------------------------------------------------------------


def _demo_line(predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    for line in fast_candidates(demo_lines()):
        data: dict[str, Any] = orjson.loads(line)
        if predicate(data):
            return data
    raise AssertionError("no such demo line")


def _aws_bucket() -> dict[str, Any]:
    return _demo_line(
        lambda d: (
            d["provider"] == "aws"
            and isinstance(d.get("transport"), dict)
            and isinstance(d["transport"].get("bucket_policy"), dict)
            and not d["unknown"]
            and len(d["evidence"]) >= 2
            and isinstance(d["evidence"][0].get("response"), dict)
        )
    )


def _with_raw(data: dict[str, Any], path: Path_, raw: bytes) -> bytes:
    put(data, path, SENTINEL)
    return orjson.dumps(data).replace(json.dumps(SENTINEL).encode(), raw, 1)


@pytest.mark.parametrize(
    "literal",
    [b"10000000000000000.0", b"123456789012345678.0", b"100000000000000000.5", b"-25000000000000000.0"],
)
def test_float_of_1e16_and_more_without_exponent_in_evidence(literal: bytes) -> None:
    """At 1e16 and above orjson writes "1e+16" where msgspec writes "1e16"; spelled without an
    exponent (fewer than 19 digits in a row) such a float reaches the fast path."""
    data = _aws_bucket()
    line = _with_raw(data, ("evidence", 0, "response"), literal)
    slow, _fast = assert_same(line)
    assert slow[0] == "record"


def test_evidence_item_keys_in_another_order() -> None:
    """`evidence_texts()` is orjson.dumps of each item as read, in the order the line gives."""
    data = _aws_bucket()
    data["evidence"][0] = dict(reversed(list(data["evidence"][0].items())))
    slow, _fast = assert_same(orjson.dumps(data))
    assert slow[0] == "record"


@pytest.mark.parametrize(
    "spelling", [b'"attestation" :', b'"attestation"\t:', b'"\\u0061ttestation":', b'"attestatio\\u006e":']
)
def test_attested_evidence_is_read_by_pydantic_however_the_key_is_spelled(spelling: bytes) -> None:
    """A resource with attested evidence is read by pydantic (`parse_record`): `check` expires
    attestations only on pydantic records, so a struct would keep an expired attestation valid."""
    attested = [line for line in demo_lines() if line.startswith(PREFIX) and ATTESTED in line]
    assert attested
    line = attested[0].replace(ATTESTED, spelling)
    assert orjson.loads(line) == orjson.loads(attested[0])
    slow, fast = parse_record(line, WHERE), parse_record(line, WHERE, fast=True)
    # Long after every attestation expired, both records must say the attested values are unknown.
    later = date(2200, 1, 1)
    (slow,) = with_expired_attestations([slow], later)
    (fast,) = with_expired_attestations([fast], later)
    assert slow.unknown and all(u.code == "expired" for u in slow.unknown.values())
    assert first_difference(mirror(slow), mirror(fast)) is None
    assert isinstance(fast, StorageResource), "attested evidence must not take the fast path"


@pytest.mark.parametrize(
    "literal",
    [
        b"18446744073709551616",
        b"-9223372036854775809",
        b"1000000000000000000000000000000",
        b"1e20",
        b"1.5e-7",
    ],
)
def test_numbers_the_parsers_read_differently_go_to_pydantic(literal: bytes) -> None:
    line = _with_raw(_aws_bucket(), ("evidence", 0, "response"), literal)
    slow, fast = assert_same(line)
    assert slow[0] == "record" and not fast[1]


@pytest.mark.parametrize("absent", ["evidence", "unknown", "evidence+unknown+optional"])
def test_a_record_without_defaulted_fields_reads_the_same(absent: str) -> None:
    data = _aws_bucket()
    del data["evidence"]
    if absent != "evidence":
        del data["unknown"]
    if absent == "evidence+unknown+optional":
        for key in ("storage_account", "scanned_at", "location", "encryption", "transport", "access", "tags"):
            del data[key]
    slow, fast = assert_same(orjson.dumps(data) + b"\n")
    assert slow[0] == "record" and fast[1]
    assert slow[3] == []


def test_escaped_colon_goes_to_pydantic() -> None:
    line = _with_raw(_aws_bucket(), ("name",), b'"a\\u003ab"')
    slow, fast = assert_same(line)
    assert slow[0] == "record" and not fast[1]
    assert slow[2]["fields"]["name"] == (str, "a:b")


# --- duplicate keys ---------------------------------------------------------------------------


def _duplicates() -> list[tuple[str, bytes, str]]:
    line = orjson.dumps(_aws_bucket())
    spaced = json.dumps(orjson.loads(line), separators=(", ", ": ")).encode()
    spaced = PREFIX + b"," + spaced[len(b'{"record": "resource", ') :]
    response = orjson.loads(line)["evidence"][0]["response"]
    response_key = next(iter(response))
    cases = [
        ("top level", line.replace(PREFIX + b",", PREFIX + b',"name":"other",', 1), "name"),
        (
            "top level, same value",
            line.replace(b'"kind":"bucket",', b'"kind":"bucket","kind":"bucket",', 1),
            "kind",
        ),
        ("top level, escaped", line.replace(PREFIX + b",", PREFIX + b',"\\u006eame":"other",', 1), "name"),
        ("top level, last", line.rstrip(b"\n")[:-1] + b',"tags":null}', "tags"),
        ("location", line.replace(b'"location":{', b'"location":{"raw":"us-east-1",', 1), "raw"),
        ("evidence item", line.replace(b'"evidence":[{', b'"evidence":[{"call":"s3:Other",', 1), "call"),
        (
            "evidence response",
            line.replace(b'"response":{', b'"response":{"%s":"x",' % response_key.encode(), 1),
            response_key,
        ),
        ("evidence response, new key", line.replace(b'"response":{', b'"response":{"k":1,"k":1,', 1), "k"),
        (
            "bucket_policy",
            line.replace(b'"bucket_policy":{', b'"bucket_policy":{"Version":"2008-10-17",', 1),
            "Version",
        ),
        ("spaced", spaced.replace(b'"location": {', b'"location": {"raw": "x", ', 1), "raw"),
    ]
    for name, text, _key in cases:
        assert text != line, name
    return cases


@pytest.mark.parametrize("case", _duplicates(), ids=lambda case: case[0])
def test_duplicate_keys_are_refused_alike(case: tuple[str, bytes, str]) -> None:
    _name, line, key = case
    slow, fast = read(line, fast=False), read(line, fast=True)
    assert slow == ("error", f'{WHERE}: duplicate key "{key}"')
    assert fast == slow


# --- model_fields_set -------------------------------------------------------------------------


def test_given_bucket_policy_is_told_from_an_absent_one() -> None:
    """`transport.bucket_policy` absent leaves the recorded transport; null (given: no policy) is
    analysed, so plaintext is not refused. Both paths agree, `model_fields_set` included."""
    data = _aws_bucket()
    data["transport"]["plaintext_refused"] = True
    data["transport"]["plaintext_refused_by"] = "as recorded"
    absent, null = copy.deepcopy(data), copy.deepcopy(data)
    del absent["transport"]["bucket_policy"]
    null["transport"]["bucket_policy"] = None
    read_absent = [parse_record(orjson.dumps(absent), WHERE, fast=fast) for fast in (False, True)]
    read_null = [parse_record(orjson.dumps(null), WHERE, fast=fast) for fast in (False, True)]
    assert _is_struct(read_absent[1]) and _is_struct(read_null[1])
    assert mirror(read_absent[0]) == mirror(read_absent[1])
    assert mirror(read_null[0]) == mirror(read_null[1])
    for record in read_absent:
        assert "bucket_policy" not in record.transport.model_fields_set
        assert record.transport.plaintext_refused is True
        assert record.transport.plaintext_refused_by == "as recorded"
    for record in read_null:
        assert "bucket_policy" in record.transport.model_fields_set
        assert record.transport.bucket_policy is None
        assert record.transport.plaintext_refused is False
        assert record.transport.plaintext_refused_by != "as recorded"
    assert mirror(read_absent[1].transport) != mirror(read_null[1].transport)


# --- what the decoder refuses to derive -------------------------------------------------------


class Sub(StrictModel):
    name: str


class Mirrorable(StrictModel):
    x: int = 0
    label: Annotated[str, StringConstraints(pattern=r"^[a-z]+$")] = "a"
    items: list[Sub] = Field(default_factory=list)


class WithValidator(StrictModel):
    x: int = 0
    items: list[Sub] = Field(default_factory=list)

    @field_validator("x")
    @classmethod
    def _positive(cls, value: int) -> int:
        return abs(value)


class WithModelValidator(StrictModel):
    x: int = 0
    items: list[Sub] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> WithModelValidator:
        return self


class WithUnion(StrictModel):
    x: int | str = 0
    items: list[Sub] = Field(default_factory=list)


class WithAlias(StrictModel):
    x: int = Field(default=0, alias="y")
    items: list[Sub] = Field(default_factory=list)


class WithValidationAlias(StrictModel):
    x: int = Field(default=0, validation_alias="y")
    items: list[Sub] = Field(default_factory=list)


class WithMutableDefault(StrictModel):
    x: list[int] = [1]  # the case under test
    items: list[Sub] = Field(default_factory=list)


class WithMaxLength(StrictModel):
    x: str = Field(default="", max_length=3)
    items: list[Sub] = Field(default_factory=list)


class WithUnanchoredPattern(StrictModel):
    x: Annotated[str, StringConstraints(pattern=r"[a-z]+")] = "a"
    items: list[Sub] = Field(default_factory=list)


class WithFloat(StrictModel):
    x: float = 0.0
    items: list[Sub] = Field(default_factory=list)


class WithExtraAllowed(StrictModel):
    model_config = ConfigDict(extra="allow")
    x: int = 0
    items: list[Sub] = Field(default_factory=list)


class WithComputedField(StrictModel):
    x: int = 0
    items: list[Sub] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> int:
        return 2 * self.x


class WithBadSub(StrictModel):
    items: list[WithUnion] = Field(default_factory=list)


class Call(StrictModel):
    at: datetime
    request: dict[str, Any] | None = None
    response: Any = None


class KeepsItsLine:
    _line: bytes | None

    def keep_evidence_line(self, line: bytes) -> None:
        self._line = line


class LineKept(KeepsItsLine, StrictModel):
    # pydantic leaves a default unvalidated: a string default of a date field stays a string.
    day: date = "2026-01-01"  # type: ignore[assignment]
    note: str | None = None
    calls: list[Call] = Field(default_factory=list)
    _line: bytes | None = PrivateAttr(default=None)
    _cache: str | None = PrivateAttr(default=None)


@pytest.mark.parametrize("unambiguous", [UNAMBIGUOUS, None], ids=["proven", "own proofs"])
@pytest.mark.parametrize(
    "text",
    [
        b"{}",
        b'{"day":"2026-02-03","note":"n"}',
        b'{"calls":[{"at":"2026-11-24T06:00:00Z"}]}',
        b'{"calls":[{"at":"2026-11-24T06:00:00Z","request":{"a":[1,{"b":null}]},"response":"x"},'
        b'{"at":"2026-11-24T07:00:00.5+02:00","request":null,"response":[1.5,true]}]}',
    ],
)
def test_line_kept_reads_mirror_the_model(text: bytes, unambiguous: Callable[[bytes], bool] | None) -> None:
    """Read with the line kept, a record has pydantic's values: its defaults as pydantic leaves
    them, dates parsed, private attributes at their defaults, and the items' payloads as JSON that
    reads as pydantic's (raw JSON text when the line was proven)."""
    decoder = RecordDecoder(LineKept, texts_of="calls", unambiguous=unambiguous)
    struct = decoder.decode(text, texts=False)
    model = LineKept.model_validate_json(text)
    assert _is_struct(struct)
    assert mirror(struct) == mirror(model)
    assert struct._line == text
    assert struct._cache is None
    raw = [isinstance(call.response, msgspec.Raw) for call in struct.calls]
    assert raw == [unambiguous is not None and b'"response"' in text] * len(struct.calls)


@pytest.mark.parametrize("unambiguous", [UNAMBIGUOUS, None], ids=["proven", "own proofs"])
@pytest.mark.parametrize(
    "text",
    [
        b'{"calls":[{"at":"2026-11-24T06:00:00Z","request":5}]}',  # not an object: pydantic refuses
        b'{"calls":[{"at":"2026-11-24T06:00:00Z","request":{"a":1,"a":2}}]}',
        b'{"calls":[{"at":"2026-11-24T06:00:00Z","response":{"a":1e400}}]}',
        b'{"calls":[{"at":"2026-11-24T06:00:00Z","response":"\xff"}]}',
        b'{"calls":[{"at":"not a time"}]}',
        b'{"day":"2026-13-01"}',
        b'{"note":1}',
    ],
)
def test_line_kept_reads_refuse_what_pydantic_refuses(
    text: bytes, unambiguous: Callable[[bytes], bool] | None
) -> None:
    try:  # the reference path refuses it: orjson, the repeated-key check or pydantic
        inventory.check_duplicate_keys(text, orjson.loads(text), WHERE)
        LineKept.model_validate_json(text)
    except (orjson.JSONDecodeError, InputError, ValidationError):
        pass
    else:
        pytest.fail("the reference path accepts it")
    decoder = RecordDecoder(LineKept, texts_of="calls", unambiguous=unambiguous)
    assert decoder.decode(text, texts=False) is None


def test_a_mirrorable_model_is_derived_and_decodes() -> None:
    decoder = RecordDecoder(Mirrorable, texts_of="items")
    # Without keep_evidence_texts the struct has nothing to keep its texts in: a plain model
    # shows derivation and type checks (a refusal returns None, an acceptance raises afterwards).
    assert decoder.decode(b'{"x":"1"}') is None
    assert decoder.decode(b'{"x":1,"label":"A"}') is None
    assert decoder.decode(b'{"x":1,"y":2}') is None
    with pytest.raises(AttributeError, match="keep_evidence_texts"):
        decoder.decode(b'{"x":1,"label":"ab","items":[{"name":"n"}]}')


@pytest.mark.parametrize(
    "model",
    [
        WithValidator,
        WithModelValidator,
        WithUnion,
        WithAlias,
        WithValidationAlias,
        WithMutableDefault,
        WithMaxLength,
        WithUnanchoredPattern,
        WithFloat,
        WithExtraAllowed,
        WithComputedField,
        WithBadSub,
    ],
    ids=lambda model: model.__name__,
)
def test_models_it_cannot_mirror_are_refused(model: type[BaseModel]) -> None:
    with pytest.raises(TypeError):
        RecordDecoder(model, texts_of="items")


def test_texts_of_must_name_a_list_of_models() -> None:
    with pytest.raises(TypeError, match="texts_of"):
        RecordDecoder(Mirrorable, texts_of="x")
