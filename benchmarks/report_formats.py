"""Benchmark: SARIF, JUnit, CSV, OCSF, Markdown and JSON reports of a large findings document.

Runs `auditor check` on the demo estate once, then writes a findings document of N findings in
auditor's own layout by cycling the demo's findings with distinct resource ids (in shuffled
order, so CSV rows and JUnit testcases have to be regrouped). Each format is then rendered by
`auditor report` in a fresh process pinned to one core; prints wall time, the child's peak RSS and
the report's size. Reports stream their findings, so peak memory should stay flat from 100k to 1M.

Usage: python benchmarks/report_formats.py [--findings 1000000] [--formats sarif junit csv ocsf markdown]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "demo-estate.jsonl"
FORMATS = ["sarif", "junit", "csv", "markdown", "json", "ocsf"]


def demo_findings(directory: Path) -> dict[str, object]:
    """The demo estate's findings document (`auditor check --format json`)."""
    output = directory / "demo-findings.json"
    args = ["check", "--inventory", str(DEMO), "--param", "zone=eu", "--format", "json", "-o", str(output)]
    done = subprocess.run([sys.executable, "-m", "auditor.cli", *args], capture_output=True, check=False)
    if done.returncode not in (0, 1, 3):
        sys.exit(f"auditor check failed ({done.returncode}): {done.stderr.decode()}")
    data: dict[str, object] = orjson.loads(output.read_bytes())
    return data


def build_findings(path: Path, demo: dict[str, object], size: int, seed: int = 1) -> None:
    """Write `size` findings in auditor's layout: the demo's, cycled, each resource renamed."""
    run = demo["run"]
    lines = [orjson.dumps(finding) for finding in demo["findings"]]  # type: ignore[attr-defined]
    rnd = random.Random(seed)
    with path.open("wb") as out:
        out.write(b'{"run": ' + orjson.dumps(run, option=orjson.OPT_INDENT_2) + b',\n"findings": [\n')
        block = 10_000
        for start in range(0, size, block):
            chunk = []
            for index in range(start, min(size, start + block)):
                line = lines[index % len(lines)]
                # the resource id (and its name) made distinct: `"id":"X"` -> `"id":"X-<n>"`
                number = rnd.randrange(size)
                line = line.replace(b'","name":"', b'-%d","name":"' % number, 1)
                chunk.append(line)
            rnd.shuffle(chunk)
            out.write((b"" if start == 0 else b",\n") + b",\n".join(chunk))
        out.write(b"\n]}\n")


def render(findings: Path, name: str, output: Path) -> tuple[float, int]:
    """`auditor report --format name` in a child pinned to one core: wall seconds, peak RSS (KiB)."""
    args = ["report", "--findings", str(findings), "--format", name, "-o", str(output)]
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "auditor.cli", *args]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(
            f"auditor report --format {name} failed: {child.stderr.read().decode() if child.stderr else ''}"
        )
    return wall, usage.ru_maxrss


def main() -> None:
    """Build the document, render every format, print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--findings", type=int, default=1_000_000)
    parser.add_argument("--formats", nargs="+", default=FORMATS, choices=FORMATS)
    options = parser.parse_args()
    print(f"python {sys.version.split()[0]}, cpus {os.cpu_count()}, each report pinned to one core")
    with tempfile.TemporaryDirectory(prefix="auditor-bench-") as tmp:
        directory = Path(tmp)
        findings = directory / "findings.json"
        build_findings(findings, demo_findings(directory), options.findings)
        size = findings.stat().st_size
        print(f"findings document: {options.findings:,} findings, {size / 1e6:,.0f} MB")
        print(
            "{:<9} {:>9} {:>10} {:>11} {:>12}".format("format", "seconds", "findings/s", "peak RSS", "size")
        )
        for name in options.formats:
            output = directory / f"report.{name}"
            wall, rss = render(findings, name, output)
            print(
                f"{name:<9} {wall:>9.1f} {options.findings / wall:>10,.0f} {rss / 1024:>9.0f}MB "
                f"{output.stat().st_size / 1e6:>10,.1f}MB"
            )
            output.unlink()


if __name__ == "__main__":
    main()
