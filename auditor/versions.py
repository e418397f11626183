"""Version strings as comparable tuples, so 'TLS1_3', 'TLSv1.3' and '1.3' all compare as (1, 3)."""

from __future__ import annotations

import re
from functools import lru_cache

_VERSION = re.compile(r"(\d+)(?:[._](\d+))?(?:[._](\d+))?")


@lru_cache(maxsize=1024)
def parse_version(text: str) -> tuple[int, ...] | None:
    """The first dotted/underscored number in `text` as a tuple, or None if there is none."""
    match = _VERSION.search(text)
    if match is None:
        return None
    parts = tuple(int(p) for p in match.groups() if p is not None)
    while len(parts) > 1 and parts[-1] == 0:
        parts = parts[:-1]
    return parts
