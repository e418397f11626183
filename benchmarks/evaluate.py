"""Benchmark: evaluate large inventories against all shipped policies, streamed from JSONL.

Builds inventories of N resources (the demo estate's records, renamed so every id is distinct),
then measures, each in a fresh process pinned to one core:

* engine: read + validate + evaluate every resource and count the findings (no output file),
  once with remembered policy outcomes (the default; the estate cycles the demo
  configurations, so nearly every outcome is remembered) and once evaluating every policy afresh;
* check:  the full `auditor check --format json --output FILE` (only for the smaller sizes,
  since the findings JSON of a million resources is several GB).

Prints resources/s, findings/s, CPU seconds and the child's peak RSS. Usage:
    python benchmarks/evaluate.py [--sizes 100000 1000000] [--check-sizes 100000]
"""

from __future__ import annotations

import argparse
import os
import resource
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
from pathlib import Path
from auditor.evaluate import Evaluator, compile_policies
from auditor.inventory import read_inventory
from auditor.policy.loader import load_policies, load_zones, shipped_policies_dir
paths = [shipped_policies_dir()]
remember = sys.argv[2] == "remember"
compiled = compile_policies(load_policies(paths), load_zones(paths), {"zone": "eu"})
evaluator = Evaluator(compiled, remember_decisions=remember)
started = time.perf_counter()
findings = sum(1 for _ in evaluator.run(read_inventory(Path(sys.argv[1]))))
print(evaluator.totals.resources, findings, time.perf_counter() - started)
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
    """Run a child process; return its stdout, wall seconds, CPU seconds and peak RSS (KiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1, 3):
        sys.exit(f"child failed ({done.returncode}): {done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout, wall, cpu, after.ru_maxrss


def main() -> None:
    """Build the inventories, run the measurements, print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--check-sizes", type=int, nargs="*", default=[100_000])
    options = parser.parse_args()
    print(f"python {sys.version.split()[0]}, cpus {os.cpu_count()}, pinned to one core")
    header = ("mode", "resources", "findings", "seconds", "res/s", "find/s", "peak RSS")
    print("{:<8} {:>10} {:>10} {:>8} {:>9} {:>10} {:>9}".format(*header))
    with tempfile.TemporaryDirectory(prefix="auditor-bench-") as tmp:
        for size in sorted(set(options.sizes) | set(options.check_sizes)):
            inventory = Path(tmp) / f"inv-{size}.jsonl"
            build_inventory(inventory, size)
            for mode in ("remember", "fresh") if size in options.sizes else ():
                # "remember": outcomes remembered by the values a policy reads (the default);
                # "fresh": every policy evaluated on every resource, as for an estate in which no
                # two resources share a configuration.
                out, _, _, rss = run_child([sys.executable, "-c", ENGINE, str(inventory), mode])
                resources, findings, seconds = out.split()
                rate = int(resources) / float(seconds)
                print(
                    f"{mode:<8} {int(resources):>10,} {int(findings):>10,} {float(seconds):>8.1f} "
                    f"{rate:>9,.0f} {int(findings) / float(seconds):>10,.0f} {rss / 1024:>7.0f}MB"
                )
            if size in options.check_sizes:
                output = Path(tmp) / "findings.json"
                cmd = ["taskset", "-c", "0", sys.executable, "-m", "auditor.cli"]
                args = ["check", "--inventory", str(inventory), "--format", "json", "--output", str(output)]
                _, wall, _, rss = run_child([*cmd, *args])
                print(
                    f"{'check':<8} {size:>10,} {'':>10} {wall:>8.1f} {size / wall:>9,.0f} {'':>10} "
                    f"{rss / 1024:>7.0f}MB  (findings JSON {output.stat().st_size / 1e6:,.0f} MB)"
                )
                output.unlink()
            inventory.unlink()


if __name__ == "__main__":
    main()
