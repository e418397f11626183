"""How one finding moved between two runs: the one classification `history diff` and reports share.

Findings are matched by policy id + resource id (never by name, so a same-named bucket in another
account is a different finding).

What was not seen is never fixed. A failing finding that is absent from the later run is *fixed*
(its resource was deleted, or fixed out of the policy's scope) only if the later run could have
seen it. If its resource lies under a coverage gap of the later run, it is *not assessed*:
`LaterCoverage.gap_over` decides which gap hides it. A gap covers a resource when:

- provider and account are the gap's and the scope is the whole account (`account`,
  `subscription`, `project`, `buckets`, `unit`, `organization`, `containers`, or any scope this
  module does not know: unknown is never narrowed);
- provider and account are the gap's, the scope names a region (`region:R`, `unit:R`) and the
  resource's regions include R or are unknown;
- the gap is *unattributed*: its account is no account either run saw (a credential profile label
  such as `default`, or `organization`), or its scope is `organization`; it then covers every
  account of its provider that has no resource in the later run.

A failing finding that becomes `error` is `newly_unknown`, never fixed.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import ItemsView, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

DriftSection = Literal[
    "new_failures", "fixed", "still_failing", "newly_unknown", "newly_waived", "not_assessed"
]
SECTIONS: tuple[DriftSection, ...] = (
    "new_failures",
    "fixed",
    "still_failing",
    "newly_unknown",
    "newly_waived",
    "not_assessed",
)


def key_digest(key: tuple[str, str]) -> int:
    """A finding's key (policy id, resource id) as a 128-bit number (a BLAKE2b digest of the key,
    length-prefixed so ("a:b", "c") and ("a", "b:c") differ), for drift over runs too large to
    hold their keys: a collision among a billion keys has odds below 1e-20."""
    policy_id, resource_id = key
    text = f"{len(policy_id)}:{policy_id}{resource_id}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=16).digest(), "big")


_LOW_64 = (1 << 64) - 1
_DIGESTS = 1 << 128
_PRESIZE_LIMIT = 1 << 20


class StatusTable(Mapping[int, str]):
    """Statuses by key digest (`key_digest`), held in flat arrays: about 17 bytes a slot, 20 to 50
    an entry, where a dict of 128-bit ints takes about 120, so a run of millions of findings can be
    compared with another on a small machine. Setting a digest again replaces its status (a key
    repeated within a run: the last holds); entries are never removed.

    Open addressing with linear probing over the digest's high 64 bits (uniform: a BLAKE2b digest).
    `expected` sizes the table for that many entries at once (a size read from input is trusted up
    to `_PRESIZE_LIMIT` entries, about 30 MB); else, and beyond, it doubles as it fills.
    """

    __slots__ = ("_codes", "_count", "_high", "_low", "_names")
    _FILL = 0.7  # the load at which the table doubles

    def __init__(self, items: Iterable[tuple[int, str]] = (), *, expected: int = 0) -> None:
        self._names: list[str] = []  # status by code - 1 (code 0: an empty slot)
        self._count = 0
        expected = min(max(expected, 0), _PRESIZE_LIMIT)
        self._allocate(max(16, int(expected / (self._FILL - 0.1)) + 1))
        for digest, status in items:
            self[digest] = status

    def _allocate(self, capacity: int) -> None:
        self._high = array("Q", [0]) * capacity
        self._low = array("Q", [0]) * capacity
        self._codes = array("B", [0]) * capacity

    def _slot(self, high: int, low: int) -> tuple[int, bool]:
        """The slot holding (high, low), True; else the empty slot where it goes, False."""
        highs, lows, codes = self._high, self._low, self._codes
        capacity = len(codes)
        slot = high % capacity
        while codes[slot]:
            if highs[slot] == high and lows[slot] == low:
                return slot, True
            slot += 1
            if slot == capacity:
                slot = 0
        return slot, False

    def __setitem__(self, digest: int, status: str) -> None:
        if not 0 <= digest < _DIGESTS:
            raise ValueError(f"not a 128-bit key digest: {digest!r}")
        high, low = digest >> 64, digest & _LOW_64
        slot, found = self._slot(high, low)
        if not found:
            if self._count + 1 > len(self._codes) * self._FILL:
                self._grow()
                slot, _ = self._slot(high, low)
            self._high[slot], self._low[slot] = high, low
            self._count += 1
        self._codes[slot] = self._code(status)

    def _code(self, status: str) -> int:
        names = self._names
        for code, name in enumerate(names, 1):
            if name == status:
                return code
        if len(names) == 255:
            raise ValueError("more than 255 distinct statuses")
        names.append(status)
        return len(names)

    def _grow(self) -> None:
        old = self._high, self._low, self._codes
        self._allocate(2 * len(self._codes))
        for high, low, code in zip(*old, strict=True):
            if code:
                slot, _ = self._slot(high, low)
                self._high[slot], self._low[slot], self._codes[slot] = high, low, code

    def get(self, digest: int, default: str | None = None) -> str | None:  # type: ignore[override]
        """The status of `digest`, else `default` (one probe; Mapping.get would raise and catch)."""
        if not 0 <= digest < _DIGESTS:
            return default
        slot, found = self._slot(digest >> 64, digest & _LOW_64)
        return self._names[self._codes[slot] - 1] if found else default

    def __getitem__(self, digest: int) -> str:
        status = self.get(digest)
        if status is None:
            raise KeyError(digest)
        return status

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, int) and self.get(digest) is not None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        return (digest for digest, _ in self._pairs())

    def items(self) -> ItemsView[int, str]:
        """(digest, status) of every entry, in no particular order."""
        return _StatusItems(self)

    def _pairs(self) -> Iterator[tuple[int, str]]:
        names = self._names
        for high, low, code in zip(self._high, self._low, self._codes, strict=True):
            if code:
                yield (high << 64) | low, names[code - 1]


class _StatusItems(ItemsView[int, str]):
    """A `StatusTable`'s items, read off its arrays rather than looked up key by key."""

    _mapping: StatusTable

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return self._mapping._pairs()


# Scopes that name one region of an account; every other scope covers the whole account.
_REGION_SCOPES = ("region:", "unit:")


def classify_change(before: str | None, after: str | None, *, assessed: bool = True) -> DriftSection | None:
    """The drift section of a finding whose status went from `before` to `after` (None: absent).

    `assessed` tells, for an absent finding, whether the later run could have seen its resource
    (False: the resource lies under a coverage gap of the later run). A failing finding that is
    gone from a later run that saw its resource (resource deleted or out of scope) is fixed; gone
    from a run that could not see it, it is not assessed. A failure that became waived is reported
    apart so it does not silently vanish; one that became `error` is newly unknown.
    """
    if after == "fail":
        return "still_failing" if before == "fail" else "new_failures"
    if after == "error":
        return "newly_unknown" if before != "error" else None
    if before == "fail" and after == "waived":
        return "newly_waived"
    if before == "fail" and after is None and not assessed:
        return "not_assessed"
    if before == "fail" and after in ("pass", None):
        return "fixed"
    return None


@dataclass(frozen=True)
class RecordedGap:
    """A coverage gap as a run recorded it (`run.coverage.gaps[]` of the findings JSON), for drift."""

    provider: str
    account: str
    scope: str
    code: str = ""
    reason: str = ""

    @classmethod
    def from_json(cls, gap: Mapping[str, Any]) -> RecordedGap:
        """From a findings-JSON gap (`{provider, account, scope, code, reason, at}`)."""
        return cls(
            provider=str(gap.get("provider") or ""),
            account=str(gap.get("account") or ""),
            scope=str(gap.get("scope") or "account"),
            code=str(gap.get("code") or ""),
            reason=str(gap.get("reason") or ""),
        )

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity across runs: provider, account, scope (the reason may change)."""
        return (self.provider, self.account, self.scope)

    @property
    def region(self) -> str | None:
        """The region a region-scoped gap names (`region:R`, `unit:R`), else None."""
        for prefix in _REGION_SCOPES:
            if self.scope.startswith(prefix) and len(self.scope) > len(prefix):
                return self.scope[len(prefix) :]
        return None

    def describe_reason(self) -> str:
        """`code: reason`, or whichever of the two is known."""
        return ": ".join(part for part in (self.code, self.reason) if part)

    def describe(self) -> str:
        """One line: `aws 777788889999 account: access_denied: AccessDenied ...`."""
        why = self.describe_reason()
        return f"{self.provider} {self.account} {self.scope}" + (f": {why}" if why else "")

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "provider": self.provider,
            "account": self.account,
            "scope": self.scope,
            "code": self.code,
            "reason": self.reason,
        }


class LaterCoverage:
    """What the later of two runs could not see: its gaps, and the accounts it did see."""

    def __init__(
        self,
        gaps: Iterable[RecordedGap],
        *,
        seen_accounts: Iterable[tuple[str, str]],
        known_accounts: Iterable[tuple[str, str]],
    ) -> None:
        """`seen_accounts`: (provider, account) with a resource in the later run;
        `known_accounts`: every (provider, account) either run saw (resources or findings)."""
        self.gaps = list(gaps)
        self.seen = frozenset(seen_accounts)
        known = frozenset(known_accounts) | self.seen
        self._attributed = [g for g in self.gaps if (g.provider, g.account) in known]
        self._unattributed = [
            g for g in self.gaps if (g.provider, g.account) not in known or g.scope == "organization"
        ]

    def __bool__(self) -> bool:
        return bool(self.gaps)

    def needs_regions(self, provider: str, account: str) -> bool:
        """Whether `gap_over` for this account depends on the resource's regions."""
        return any(g.region is not None for g in self._candidates(provider, account))

    def _candidates(self, provider: str, account: str) -> list[RecordedGap]:
        out = [g for g in self._attributed if g.provider == provider and g.account == account]
        if (provider, account) not in self.seen:
            out += [g for g in self._unattributed if g.provider == provider and g not in out]
        return out

    def gap_over(
        self, provider: str, account: str, regions: Sequence[str] | None = None
    ) -> RecordedGap | None:
        """The gap of the later run that hides a resource of `provider`/`account`, or None.

        `regions` are the resource's regions (None or empty: unknown, so any region gap of its
        account covers it).
        """
        candidates = self._candidates(provider, account)
        for gap in candidates:
            if gap.region is None:
                return gap
        for gap in candidates:
            if not regions or gap.region in regions:
                return gap
        return None


def gap_changes(
    before: Iterable[RecordedGap], after: Iterable[RecordedGap]
) -> tuple[list[RecordedGap], list[RecordedGap]]:
    """Coverage gaps new in the later run and gaps of the earlier run that are closed in it,
    matched by provider, account and scope."""
    old = {g.key: g for g in before}
    new = {g.key: g for g in after}
    opened = [g for k, g in sorted(new.items()) if k not in old]
    closed = [g for k, g in sorted(old.items()) if k not in new]
    return opened, closed
