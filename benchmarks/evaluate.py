"""Benchmark: evaluate large inventories against all shipped policies, streamed from JSONL.

Builds inventories of N resources (the demo estate's records, renamed so every id is distinct,
about 2 KB each), then measures, each in a fresh process pinned to one core:

* eval:  read + validate + evaluate every resource and build its findings' JSON (`Evaluator.encode`,
  remembered decisions, the default; records read by the fast decoder, as `auditor check` does), in
  each evidence form, counting the bytes instead of writing them; `fresh` evaluates every policy
  afresh on every resource (an estate in which no two resources share a configuration) with the
  reference path's `Finding` objects;
* check: the whole `auditor check --format json --output FILE --evidence FORM`, wall time including
  interpreter start-up and imports. The inline form of a million resources is about 6 GB: it is
  measured only with `--inline-check-sizes` (the spool and the document are then both written).

Prints resources/s, findings/s, the child's peak RSS and findings bytes per inventory byte, and the
start-up time of `auditor check --help`. Usage:
    python benchmarks/evaluate.py [--sizes 100000 1000000] [--check-sizes 100000 1000000]
                                  [--inline-check-sizes 100000] [--fresh-sizes 100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "demo-estate.jsonl"

ENGINE = """
import os, sys, time
os.sched_setaffinity(0, {0})
from datetime import date
from pathlib import Path
from auditor.attestations import with_expired_attestations
from auditor.evaluate import Evaluator, compile_policies
from auditor.inventory import read_inventory
from auditor.policy.loader import load_policies, load_zones, shipped_policies_dir
paths = [shipped_policies_dir()]
mode = sys.argv[2]
compiled = compile_policies(load_policies(paths), load_zones(paths), {"zone": "eu"})
evaluator = Evaluator(compiled, remember_decisions=mode != "fresh")
started, cpu = time.perf_counter(), time.process_time()
# Struct records (auditor.fast_decode) for the shared-parts writer, as `auditor check` reads them.
inventory = read_inventory(Path(sys.argv[1]), fast=mode != "fresh", evidence_texts=mode == "inline")
records = with_expired_attestations(inventory, date.today())
findings = size = 0
if mode == "fresh":
    import orjson
    for finding in evaluator.run(records):
        findings += 1
        size += len(orjson.dumps(finding.to_json_dict())) + 2
else:
    for encoded in evaluator.encode(records, reference=mode == "reference"):
        size += len(encoded) + 2 * (len(encoded) > 0)
    findings = sum(evaluator.totals.status.values())
print(evaluator.totals.resources, findings, size, time.perf_counter() - started, time.process_time() - cpu)
"""


def build_inventory(path: Path, size: int) -> None:
    """Write `size` resources by cycling the demo records with distinct names and ids."""
    records = [line for line in DEMO.read_bytes().splitlines() if b'"record":"gap"' not in line]
    with path.open("wb") as out:
        for i in range(size):
            line = records[i % len(records)]
            # Every name occurs in the record's name, id and evidence; a suffix keeps ids unique.
            out.write(line.replace(b'"name":"', b'"name":"n%d-' % i, 1).replace(b":::", b":::n%d-" % i, 1))
            out.write(b"\n")


def run_child(args: list[str]) -> tuple[str, float, float, int]:
    """Run a child process; return its stdout, wall seconds, CPU seconds and its own peak RSS (KiB)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(args, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode not in (0, 1, 3):
            sys.exit(f"child failed ({child.returncode}): {err.read().decode()}")
        return out.read().decode(), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def startup_seconds() -> float:
    """The best of three `auditor check --help` (interpreter start-up and the check path's imports)."""
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "auditor.cli", "check", "--help"]
    return min(run_child(cmd)[1] for _ in range(3))


ROW = "{:<16} {:>10} {:>10} {:>7} {:>7} {:>16} {:>18} {:>8} {:>7}"


def main() -> None:
    """Build the inventories, run the measurements, print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--check-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--inline-check-sizes", type=int, nargs="*", default=[100_000])
    parser.add_argument("--fresh-sizes", type=int, nargs="*", default=[100_000])
    parser.add_argument(
        "--directory", type=Path, help="Where inventories and findings go (default: a temp dir)."
    )
    options = parser.parse_args()
    print(f"python {sys.version.split()[0]}, cpus {os.cpu_count()}, each run pinned to core 0")
    print(f"start-up (`auditor check --help`, best of 3): {startup_seconds():.2f} s")
    print("seconds: wall on the shared core; cpu: the run's own CPU time; res/s and find/s from wall (cpu)")
    print(
        ROW.format(
            "run", "resources", "findings", "wall s", "cpu s", "res/s", "find/s", "peak RSS", "out/inv"
        )
    )
    sizes = set(options.sizes) | set(options.check_sizes) | set(options.inline_check_sizes)
    with tempfile.TemporaryDirectory(prefix="auditor-bench-", dir=options.directory) as tmp:
        for size in sorted(sizes | set(options.fresh_sizes)):
            inventory = Path(tmp) / f"inv-{size}.jsonl"
            build_inventory(inventory, size)
            inventory_bytes = inventory.stat().st_size
            modes = [
                m for m, chosen in (("inline", options.sizes), ("reference", options.sizes)) if size in chosen
            ]
            if size in options.fresh_sizes:
                modes.append("fresh")
            for mode in modes:
                out, _, _, rss = run_child([sys.executable, "-c", ENGINE, str(inventory), mode])
                resources, findings, written, seconds, cpu_seconds = out.split()
                elapsed, cpu = float(seconds), float(cpu_seconds)
                print(
                    ROW.format(
                        f"eval {mode}",
                        f"{int(resources):,}",
                        f"{int(findings):,}",
                        f"{elapsed:.1f}",
                        f"{cpu:.1f}",
                        f"{int(resources) / elapsed:,.0f} ({int(resources) / cpu:,.0f})",
                        f"{int(findings) / elapsed:,.0f} ({int(findings) / cpu:,.0f})",
                        f"{rss / 1024:.0f}MB",
                        f"{int(written) / inventory_bytes:.2f}x",
                    )
                )
            for form, chosen in (("inline", options.inline_check_sizes), ("reference", options.check_sizes)):
                if size not in chosen:
                    continue
                output = Path(tmp) / "findings.json"
                cmd = ["taskset", "-c", "0", sys.executable, "-m", "auditor.cli", "check"]
                args = ["--inventory", str(inventory), "--format", "json", "--output", str(output)]
                _, wall, cpu, rss = run_child([*cmd, *args, "--evidence", form])
                written = output.stat().st_size
                print(
                    ROW.format(
                        f"check {form}",
                        f"{size:,}",
                        "",
                        f"{wall:.1f}",
                        f"{cpu:.1f}",
                        f"{size / wall:,.0f} ({size / cpu:,.0f})",
                        "",
                        f"{rss / 1024:.0f}MB",
                        f"{written / inventory_bytes:.2f}x",
                    )
                    + f"  ({written / 1e6:,.0f} MB findings, {inventory_bytes / 1e6:,.0f} MB inventory)"
                )
                output.unlink()
            inventory.unlink()


if __name__ == "__main__":
    main()
