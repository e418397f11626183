"""Benchmark the scheduled audit job (`auditor audit`) on large estates: time and peak memory.

For each size (default 20,000 and 100,000 resources) it builds an inventory of demo-shaped
resources (`evaluate.build_inventory`: the demo records renamed, about 2 KB each), writes an
auditor.yaml that audits it (zone eu, HTML and SARIF reports, a SQLite history, an evidence
bundle), and runs the job twice in fresh processes: the first run has no
previous run; the second compares with the first (the reports' changes, the history's drift).
Prints, per run, wall and CPU seconds, the child's peak resident memory, and the findings.

Run: .venv/bin/python benchmarks/audit_job.py [--sizes 20000 100000] [--evidence inline|reference]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import orjson
from evaluate import build_inventory, run_child

CONFIG = """\
name: audit-benchmark
inventories: [{inventory}]
params:
  zone: eu
outputs:
  directory: {out}
  formats: [html, sarif]
  evidence: {evidence}
"""
ROW = "{:>10} {:<10} {:>8} {:>8} {:>9} {:>10} {:>6}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--evidence", choices=["inline", "reference"], default="inline")
    args = parser.parse_args()
    print(ROW.format("resources", "run", "wall s", "cpu s", "peak MB", "findings", "exit"))
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="auditor-audit-bench-") as tmp:
            work = Path(tmp)
            inventory = work / "inventory.jsonl"
            build_inventory(inventory, size)
            out = work / "out"
            config = work / "auditor.yaml"
            config.write_text(CONFIG.format(inventory=inventory, out=out, evidence=args.evidence))
            for label in ("first", "second"):
                command = [sys.executable, "-m", "auditor.cli", "audit", "--config", str(config)]
                stdout, wall, cpu, peak_kib = run_child(command)
                with (out / "findings.json").open("rb") as handle:
                    head = handle.read(1 << 20)
                run = orjson.loads(head[: head.index(b',\n"findings": [')].removeprefix(b'{"run": '))
                findings = run["counts"]["findings"]
                exit_code = run["gate"]["exit_code"]
                print(
                    ROW.format(
                        size, label, f"{wall:.1f}", f"{cpu:.1f}", peak_kib // 1024, findings, exit_code
                    )
                )
                if label == "second" and "since run" not in stdout:
                    sys.exit("the second run did not compare with the first")


if __name__ == "__main__":
    main()
