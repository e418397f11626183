"""Benchmark `auditor scan gcp` on a generated estate served by the recorded GCS JSON API server.

    .venv/bin/python benchmarks/scan_gcp.py [--buckets 1000] [--projects 4] [--latency-ms 0 50]

The estate (regions, dual-/multi-regions, configurable dual-regions, CMEK, labels) is generated in
memory and served from a separate process, so the CPU time measured is the scanner's own. For each
latency (added to every HTTP response) it prints buckets/s, HTTP requests per bucket (counted by
the server) and API calls per bucket (counted by the scanner).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SERVER_FILE = REPO / "tests" / "scan" / "gcp" / "recorded_server.py"
LOCATIONS: list[tuple[str, str, list[str] | None]] = [
    ("EUROPE-WEST1", "region", None),
    ("EUROPE-WEST4", "region", None),
    ("US-CENTRAL1", "region", None),
    ("EU", "multi-region", None),
    ("ASIA", "multi-region", None),
    ("EUR4", "dual-region", None),
    ("EUR5", "dual-region", None),
    ("EU", "dual-region", ["EUROPE-WEST1", "EUROPE-WEST4"]),
]
WIDTHS = (8, 8, 10, 11, 13, 14)


def _server_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("recorded_gcs_server", SERVER_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def generate_bucket(project: str, index: int) -> dict[str, Any]:
    """One bucket resource in the JSON API shape, varied by index."""
    location, kind, data_locations = LOCATIONS[index % len(LOCATIONS)]
    name = f"{project}-bucket-{index:05d}"
    bucket: dict[str, Any] = {
        "kind": "storage#bucket",
        "selfLink": f"https://www.googleapis.com/storage/v1/b/{name}",
        "id": name,
        "name": name,
        "projectNumber": "100000000001",
        "metageneration": "1",
        "location": location,
        "locationType": kind,
        "storageClass": "STANDARD",
        "etag": "CAE=",
        "timeCreated": "2024-01-01T00:00:00.000Z",
        "updated": "2024-01-01T00:00:00.000Z",
        "iamConfiguration": {
            "bucketPolicyOnly": {"enabled": index % 2 == 0},
            "uniformBucketLevelAccess": {"enabled": index % 2 == 0},
            "publicAccessPrevention": "enforced" if index % 3 == 0 else "inherited",
        },
        "labels": {"data-class": "internal", "ai-training": "opt-out" if index % 5 else "opt-in"},
    }
    if data_locations:
        bucket["customPlacementConfig"] = {"dataLocations": data_locations}
    if index % 4 == 0:
        bucket["encryption"] = {
            "defaultKmsKeyName": f"projects/{project}/locations/europe-west1/keyRings/r/cryptoKeys/k{index}"
        }
    if index % 7 == 0:
        bucket["retentionPolicy"] = {"retentionPeriod": "86400", "isLocked": False}
    return bucket


def _serve(buckets: int, projects: int, delay: float, ready: Any, stop: Any) -> None:
    module = _server_module()
    per_project = buckets // projects
    estate = {}
    for p in range(projects):
        project = f"bench-{p:02d}"
        count = per_project + (1 if p < buckets % projects else 0)
        estate[project] = module.RecordedProject(
            project=project, buckets=[generate_bucket(project, i) for i in range(count)]
        )
    server = module.RecordedGcsServer(estate, delay=delay).start()
    ready.put(server.url)
    stop.wait()
    server.stop()


def _stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/_stats", timeout=10) as answer:
        return dict(json.loads(answer.read()))


def run_once(buckets: int, projects: int, latency_ms: float, concurrency: int) -> dict[str, float]:
    """Serve the estate with `latency_ms` per response, scan it, and return the figures."""
    from auditor.policy.loader import load_zones
    from auditor.scan.base import AttributeNeeds, run_scan
    from auditor.scan.gcp import GcsScanner

    context = multiprocessing.get_context("spawn")
    ready, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve, args=(buckets, projects, latency_ms / 1000.0, ready, stop))
    process.start()
    try:
        url = ready.get(timeout=60)
        os.environ["STORAGE_EMULATOR_HOST"] = url
        scanner = GcsScanner(
            AttributeNeeds.everything("bucket"),
            load_zones([]),
            [f"bench-{p:02d}" for p in range(projects)],
            concurrency=concurrency,
        )
        with tempfile.TemporaryDirectory() as tmp:
            cpu = time.process_time()
            summary = run_scan(scanner, Path(tmp) / "inv.jsonl", progress=False)
            cpu = time.process_time() - cpu
        requests = sum(_stats(url).values())
    finally:
        stop.set()
        process.join(timeout=30)
    assert summary.resources == buckets, (summary.resources, buckets)
    return {
        "latency_ms": latency_ms,
        "buckets": summary.resources,
        "seconds": summary.seconds,
        "buckets_per_s": summary.resources / summary.seconds,
        "requests_per_bucket": requests / summary.resources,
        "calls_per_bucket": summary.calls_per_resource,
        "cpu_ms_per_bucket": 1000.0 * cpu / summary.resources,
    }


def main() -> None:
    """Parse the options, run each latency, print a table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--buckets", type=int, default=1000)
    parser.add_argument("--projects", type=int, default=4, help="projects the buckets are spread over")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 50.0])
    parser.add_argument("--concurrency", type=int, default=16)
    options = parser.parse_args()
    print(
        f"GCS scan benchmark: {options.buckets} buckets in {options.projects} projects, "
        f"every attribute group collected, concurrency {options.concurrency}"
    )
    header = ("latency", "seconds", "buckets/s", "req/bucket", "calls/bucket", "cpu ms/bucket")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, WIDTHS, strict=True)))
    for latency in options.latency_ms:
        row = run_once(options.buckets, options.projects, latency, options.concurrency)
        cells = (
            f"{row['latency_ms']:.0f}ms",
            f"{row['seconds']:.2f}",
            f"{row['buckets_per_s']:.0f}",
            f"{row['requests_per_bucket']:.4f}",
            f"{row['calls_per_bucket']:.4f}",
            f"{row['cpu_ms_per_bucket']:.3f}",
        )
        print(" ".join(f"{c:>{w}}" for c, w in zip(cells, WIDTHS, strict=True)))


if __name__ == "__main__":
    main()
