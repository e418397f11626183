"""Version parsing used by gte/lte."""

from __future__ import annotations

import pytest

from auditor.versions import parse_version


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TLS1_3", (1, 3)),
        ("TLSv1.2", (1, 2)),
        ("1.2", (1, 2)),
        ("TLS1_0", (1,)),
        ("1", (1,)),
        ("tls 1.10", (1, 10)),
    ],
)
def test_parse(text: str, expected: tuple[int, ...]) -> None:
    assert parse_version(text) == expected


def test_no_number_is_none() -> None:
    assert parse_version("TLS") is None


def test_ordering_matches_tls_semantics() -> None:
    parsed = [parse_version(v) for v in ("TLS1_0", "TLS1_1", "TLS1_2", "1.3")]
    assert parsed == sorted(parsed)  # type: ignore[type-var]
