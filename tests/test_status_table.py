"""auditor.drift.StatusTable: statuses by key digest in flat arrays, as a dict would hold them."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from auditor.drift import StatusTable, key_digest

_STATUSES = ("pass", "fail", "error", "waived")


def _same_as_dict(table: StatusTable, expected: dict[int, str]) -> None:
    assert len(table) == len(expected)
    assert dict(table.items()) == expected
    assert sorted(table) == sorted(expected)
    assert table == expected
    for digest, status in expected.items():
        assert table[digest] == status
        assert table.get(digest) == status
        assert digest in table


def test_a_table_holds_what_a_dict_holds_through_growth_and_replacement() -> None:
    rng = random.Random(17)
    digests = [rng.getrandbits(128) for _ in range(5_000)]
    table, expected = StatusTable(), {}
    for position, digest in enumerate(digests + digests[::7]):  # every seventh key set again
        status = _STATUSES[position % 4]
        table[digest] = status
        expected[digest] = status
    _same_as_dict(table, expected)
    absent = [d for d in (rng.getrandbits(128) for _ in range(2_000)) if d not in expected]
    assert absent and all(table.get(d) is None and d not in table for d in absent)
    with pytest.raises(KeyError):
        table[absent[0]]


def test_digests_alike_in_their_high_bits_or_wrapping_round_the_table_stay_apart() -> None:
    table = StatusTable()  # 16 slots at first
    high = 15  # the last slot: probing wraps to slot 0
    colliding = {(high << 64) | low: _STATUSES[low % 4] for low in range(9)}
    for digest, status in colliding.items():
        table[digest] = status
    _same_as_dict(table, colliding)
    assert table.get((high << 64) | 99) is None


def test_key_digests_of_real_keys_and_the_extremes_are_kept() -> None:
    keys = {
        key_digest((f"policy.{p}", f"arn:aws:s3:::bucket-{r}")): "fail" for p in range(20) for r in range(50)
    }
    keys[0] = "pass"
    keys[(1 << 128) - 1] = "error"
    _same_as_dict(StatusTable(keys.items(), expected=len(keys)), keys)


@pytest.mark.parametrize("digest", [-1, 1 << 128])
def test_a_number_that_is_no_128_bit_digest_is_refused(digest: int) -> None:
    table = StatusTable()
    with pytest.raises(ValueError, match="128-bit"):
        table[digest] = "pass"
    assert table.get(digest) is None
    assert digest not in table
    assert "pass" not in table


def test_entries_cost_a_fraction_of_a_dict() -> None:
    rng = random.Random(3)
    pairs = [(rng.getrandbits(128), _STATUSES[n % 4]) for n in range(50_000)]
    tracemalloc.start()
    try:
        table = StatusTable(pairs, expected=len(pairs))
        held = tracemalloc.get_traced_memory()[0]
        grown = StatusTable(pairs)  # no size given: doubles as it fills
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(table) == len(grown) == len(pairs)
    assert held / len(pairs) < 32  # a dict of int digests takes about 120 bytes an entry
    assert (peak - held) / len(pairs) < 80  # while doubling, the old and new arrays at once


def test_a_size_claimed_by_input_is_trusted_only_so_far() -> None:
    tracemalloc.start()
    try:
        table = StatusTable(expected=10**15)  # a hostile document's `run.counts.findings`
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20
    table[5] = "pass"
    assert dict(table.items()) == {5: "pass"}
