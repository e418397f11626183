"""Duplicate keys in an inventory line are refused; the cheap proof settles lines without them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor.errors import InputError
from auditor.inventory import parse_record, proves_no_duplicate_keys

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "demo-estate.jsonl"


def test_parse_record_still_names_a_duplicate_key() -> None:
    line = DEMO.read_bytes().splitlines()[0]
    with pytest.raises(InputError, match=r'^x:2: duplicate key "name"$'):
        parse_record(line.replace(b'"name":', b'"name":"dup","name":', 1), "x:2")
    with pytest.raises(InputError, match=r'^x:3: duplicate key "Bucket"$'):
        parse_record(line.replace(b'"Bucket":', b'"Bucket":"b","Bucket":', 1), "x:3")


@pytest.mark.parametrize(
    ("text", "proven"),
    [
        (b'{"a":1,"b":{"c":"x:y"}}', True),
        (b'{"a": 1}', True),  # counts agree (whitespace does not change colons)
        (b'{"a":1,"a":2}', False),
        (b'{"a":{"b":1,"b":1}}', False),
        (b'{"a":"\\u003a","b":1}', False),  # an escaped colon is not counted: not proven
        (b'{"\\u0061":1,"a":2}', False),
    ],
)
def test_proof_of_no_duplicate_keys(text: bytes, proven: bool) -> None:
    assert proves_no_duplicate_keys(text, json.loads(text)) is proven
