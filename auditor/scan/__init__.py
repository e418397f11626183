"""Cloud scanners, one module per cloud, each exposing a click `command` for `auditor scan <cloud>`."""

from __future__ import annotations

# Loaded lazily so `auditor check` never imports a cloud SDK.
SCANNER_COMMANDS: dict[str, str] = {
    "aws": "auditor.scan.aws:command",
    "gcp": "auditor.scan.gcp:command",
    "azure": "auditor.scan.azure:command",
}
