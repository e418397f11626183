"""auditor: policy-as-code compliance auditor for cloud data residency."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("auditor")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"
