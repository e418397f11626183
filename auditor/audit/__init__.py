"""The audit job: one command that scans, checks, reports, remembers runs and writes signed evidence.

`config` reads auditor.yaml, `job` runs the pipeline, `history` stores runs (SQLite or PostgreSQL),
`baseline` accepts known failures, `bundle` writes and verifies evidence bundles, `period` builds
the SOC 2 Type 2 period report. `command` is the click wiring. See docs/audit.md.
"""
