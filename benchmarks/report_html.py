"""Benchmark the HTML evidence report on large estates: render time, peak memory, file size, Chromium load.

For each size (default 100,000 and 1,000,000 findings) it builds an inventory by copying the demo estate's
resources under distinct names until evaluation gives about that many findings, evaluates it with the
shipped policies (`auditor check`, in-process), renders the HTML report in a child process with
`auditor report --inventory ...` (wall and CPU time, the child's peak resident memory, file size),
and opens it in headless Chromium (Debian's /usr/bin/chromium through Playwright). With `--reference`
it also evaluates in the reference form (findings that point into the inventory) and renders that
without the inventory; with `--previous` it renders the inline report again with `--previous` (the
run compared with itself: every failure still failing). The findings are never loaded whole here
either: counts come from the run.

Run: .venv/bin/python benchmarks/report_html.py [--findings 100000 1000000] [--keep DIR] [--reference]
[--previous]
(`--keep DIR` keeps, and reuses on the next run, the inventories and findings; about 1.6 GB at 1M).
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "demo-estate.jsonl"
WAIVERS = REPO / "fixtures" / "demo-waivers.yaml"
TODAY = date(2026, 11, 24)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FINDINGS_PER_COPY = 297  # about the findings of one copy of the demo estate with the shipped policies
# Runs the report in a grandchild and prints its peak resident memory (KiB): RUSAGE_CHILDREN of this
# process holds that one child only, whatever ran before in the benchmark.
PEAK_OF_CHILD = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def build_inventory(path: Path, copies: int) -> int:
    """Write `copies` renamed copies of every demo resource (gap records once); returns resources."""
    lines = [line for line in DEMO.read_text().splitlines() if line.strip()]
    resources = 0
    with path.open("w") as out:
        for line in lines:
            if '"record":"gap"' in line:
                out.write(line + "\n")
        for copy in range(copies):
            for line in lines:
                if '"record":"gap"' in line:
                    continue
                name = orjson.loads(line)["name"]
                # the name as a whole token only: "scratch" must not touch "acme-ml-scratch"
                token = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
                out.write(token.sub(f"{name}-c{copy}", line) if copy else line)
                out.write("\n")
                resources += 1
    return resources


def evaluate(inventory: Path, findings: Path, evidence: str = "inline") -> float:
    """`auditor check` in-process; returns seconds."""
    from auditor.check import CheckOptions, run_check
    from auditor.document import write_findings_document

    start = time.perf_counter()
    options = CheckOptions(
        inventory=inventory, params={"zone": "eu"}, waivers=WAIVERS, today=TODAY, evidence=evidence
    )
    result = run_check(options)
    try:
        write_findings_document(result.spool, result.run, findings)
    finally:
        result.spool.close()
    return time.perf_counter() - start


@dataclass
class Rendered:
    """One `auditor report --format html` run."""

    label: str
    findings: int
    findings_mb: float
    wall: float
    cpu: float
    peak_mb: float
    html_mb: float
    loaded: float | None = None
    painted: float | None = None


def render(
    findings: Path, inventory: Path | None, html: Path, previous: Path | None = None
) -> tuple[float, float, float]:
    """(wall s, CPU s, peak MB) of `auditor report --format html` in a child process."""
    import resource

    command = [sys.executable, "-c", "from auditor.cli import main; main()", "report"]
    command += ["--findings", str(findings), "--format", "html", "--output", str(html)]
    if inventory is not None:
        command += ["--inventory", str(inventory)]
    if previous is not None:
        command += ["--previous", str(previous)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_OF_CHILD, *command], check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, int(done.stdout.split()[-1]) / 1024


def chromium_load(html: Path) -> tuple[float, float]:
    """Seconds to the load event, and to a painted first screen (screenshot), in headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        start = time.perf_counter()
        page.goto(html.as_uri(), wait_until="load", timeout=600_000)
        loaded = time.perf_counter() - start
        page.screenshot(path=str(html.with_suffix(".png")), timeout=600_000)
        painted = time.perf_counter() - start
        browser.close()
    return loaded, painted


def prepare(work: Path, target: int, evidence: str) -> tuple[Path, Path]:
    """The inventory and findings of about `target` findings (reused when `work` holds them)."""
    size = f"{target // 1000}k"
    inventory, findings = work / f"inventory-{size}.jsonl", work / f"findings-{size}-{evidence}.json"
    if not inventory.exists():
        resources = build_inventory(inventory, math.ceil(target / FINDINGS_PER_COPY))
        print(f"[{size}] inventory: {resources:,} resources, {inventory.stat().st_size / 1e6:.0f} MB")
    if not findings.exists():
        seconds = evaluate(inventory, findings, evidence)
        print(f"[{size}] evaluated ({evidence} evidence) in {seconds:.1f} s")
    return inventory, findings


def measure(
    label: str,
    findings: Path,
    inventory: Path | None,
    html: Path,
    browser: bool,
    previous: Path | None = None,
) -> Rendered:
    """Render once and, if asked, open it in Chromium."""
    from auditor.findings_stream import FindingsStream

    run = FindingsStream.open(findings).run
    wall, cpu, peak = render(findings, inventory, html, previous)
    result = Rendered(
        label, run.counts.findings, findings.stat().st_size / 1e6, wall, cpu, peak, html.stat().st_size / 1e6
    )
    if browser:
        result.loaded, result.painted = chromium_load(html)
    print(f"[{label}] {result}", flush=True)
    return result


def table(results: list[Rendered]) -> str:
    """The figures as a Markdown table."""
    lines = [
        "| run | findings | findings JSON | report wall | CPU | peak RSS | HTML | Chromium load "
        "| first paint |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        load = f"{r.loaded:.1f} s" if r.loaded is not None else "-"
        paint = f"{r.painted:.1f} s" if r.painted is not None else "-"
        lines.append(
            f"| {r.label} | {r.findings:,} | {r.findings_mb:,.0f} MB | {r.wall:.1f} s | {r.cpu:.1f} s "
            f"| {r.peak_mb:.0f} MB | {r.html_mb:.1f} MB | {load} | {paint} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--findings", type=int, nargs="+", default=[100_000, 1_000_000], help="about how many findings"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep (and reuse) the inventories, findings and reports here"
    )
    parser.add_argument("--reference", action="store_true", help="also the reference form, without inventory")
    parser.add_argument(
        "--previous", action="store_true", help="also with --previous (the same run as the previous one)"
    )
    parser.add_argument("--no-browser", action="store_true", help="do not open the reports in Chromium")
    args = parser.parse_args()

    browser = not args.no_browser and Path(CHROMIUM).exists()
    if not args.no_browser and not browser:
        print(f"chromium: {CHROMIUM} not found (apt-get install -y chromium); load time not measured")
    work = args.keep or Path(tempfile.mkdtemp(prefix="auditor-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for target in args.findings:
            size = f"{target // 1000}k"
            inventory, findings = prepare(work, target, "inline")
            html = work / f"report-{size}.html"
            results.append(measure(f"{size} inline + inventory", findings, inventory, html, browser))
            if args.reference:
                _, referencing = prepare(work, target, "reference")
                html = work / f"report-{size}-reference.html"
                results.append(measure(f"{size} reference, no inventory", referencing, None, html, browser))
            if args.previous:
                # compared with itself: every finding is matched, every failure is still failing
                html = work / f"report-{size}-previous.html"
                label = f"{size} inline + inventory, --previous (itself)"
                results.append(measure(label, findings, inventory, html, browser, previous=findings))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
