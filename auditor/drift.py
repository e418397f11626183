"""How one finding moved between two runs: the one classification `history diff` and reports share.

Findings are matched by policy id + resource id (never by name, so a same-named bucket in another
account is a different finding).
"""

from __future__ import annotations

from typing import Literal

DriftSection = Literal["new_failures", "fixed", "still_failing", "newly_unknown", "newly_waived"]
SECTIONS: tuple[DriftSection, ...] = (
    "new_failures",
    "fixed",
    "still_failing",
    "newly_unknown",
    "newly_waived",
)


def classify_change(before: str | None, after: str | None) -> DriftSection | None:
    """The drift section of a finding whose status went from `before` to `after` (None: absent).

    A failing finding that is gone from the later run (resource deleted or out of scope) is fixed;
    a failure that became waived is reported apart so it does not silently vanish.
    """
    if after == "fail":
        return "still_failing" if before == "fail" else "new_failures"
    if after == "error":
        return "newly_unknown" if before != "error" else None
    if before == "fail" and after == "waived":
        return "newly_waived"
    if before == "fail" and after in ("pass", None):
        return "fixed"
    return None
