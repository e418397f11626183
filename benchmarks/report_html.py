"""Benchmark the HTML evidence report on a large estate: render time, file size, Chromium load time.

Builds an inventory by copying the demo estate's resources under distinct names until evaluation gives
about --findings findings (default 100,000), evaluates it with the shipped policies, renders the HTML
report, and opens it in headless Chromium (Debian's /usr/bin/chromium through Playwright).

Run: .venv/bin/python benchmarks/report_html.py [--findings 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import math
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
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


def evaluate(inventory: Path, findings: Path) -> float:
    """`auditor check` in-process; returns seconds."""
    from auditor.check import CheckOptions, run_check
    from auditor.document import write_findings_document

    start = time.perf_counter()
    options = CheckOptions(inventory=inventory, params={"zone": "eu"}, waivers=WAIVERS, today=TODAY)
    result = run_check(options)
    try:
        write_findings_document(result.spool, result.run, findings)
    finally:
        result.spool.close()
    return time.perf_counter() - start


def chromium_load(html: Path) -> tuple[float, float]:
    """Seconds to the load event, and to a painted first screen (screenshot), in headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        start = time.perf_counter()
        page.goto(html.as_uri(), wait_until="load", timeout=120_000)
        loaded = time.perf_counter() - start
        page.screenshot(path=str(html.with_suffix(".png")))
        painted = time.perf_counter() - start
        browser.close()
    return loaded, painted


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=100_000, help="about how many findings to make")
    parser.add_argument("--keep", type=Path, help="keep the inventory, findings and report in this directory")
    args = parser.parse_args()

    from auditor.document import load_document

    work = args.keep or Path(tempfile.mkdtemp(prefix="auditor-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        inventory, findings, html = work / "inventory.jsonl", work / "findings.json", work / "report.html"
        per_copy = 297  # about the findings of one copy of the demo estate with the shipped policies
        resources = build_inventory(inventory, math.ceil(args.findings / per_copy))
        seconds = evaluate(inventory, findings)
        print(f"inventory: {resources} resources; evaluated in {seconds:.1f} s")

        start = time.perf_counter()
        document = load_document(findings)
        parsed = time.perf_counter() - start
        counts = {str(status): n for status, n in document.run.counts.by_status.items()}
        print(
            f"findings: {len(document.findings)} ({counts}); "
            f"findings JSON {findings.stat().st_size / 1e6:.1f} MB, read and checked in {parsed:.1f} s"
        )
        del document
        command = [sys.executable, "-c", "from auditor.cli import main; main()", "report"]
        command += ["--findings", str(findings), "--inventory", str(inventory), "--format", "html"]
        start = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([*command, "--output", str(html)], check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter() - start
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        size = html.stat().st_size
        print(
            f"auditor report --format html: {wall:.1f} s wall, {cpu:.1f} s CPU, "
            f"peak memory {after.ru_maxrss / 1024:.0f} MB; file size {size / 1e6:.1f} MB"
        )
        if shutil.which(CHROMIUM) or Path(CHROMIUM).exists():
            loaded, painted = chromium_load(html)
            print(f"chromium: load event after {loaded:.2f} s; first screen painted after {painted:.2f} s")
        else:
            print(f"chromium: {CHROMIUM} not found (apt-get install -y chromium); load time not measured")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
