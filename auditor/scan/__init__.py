"""Sources to scan, one module per source, registered in `auditor.sources`.

Each source module declares `SOURCE` (its config section, units of work, scanner and
`auditor scan <name>` command); scanner modules, which import cloud SDKs, load only when used.
"""
