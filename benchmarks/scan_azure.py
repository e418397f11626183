"""Benchmark `AzureScanner` on a generated estate: 50 storage accounts, 1,000 blob containers.

Runs the loopback ARM server of the tests (generated account JSON, 10 accounts per page, a few
Key Vault-keyed accounts) and Azurite from node_modules (20 containers per account with metadata),
then scans with every attribute wanted and with the training policy's needs only. Prints
containers/s and requests per container. Usage: `.venv/bin/python benchmarks/scan_azure.py`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from azure.storage.blob import BlobServiceClient  # noqa: E402

from auditor.model import STORAGE_KINDS, StorageResource  # noqa: E402
from auditor.policy.loader import load_zones  # noqa: E402
from auditor.scan.azure import AzureScanner, StaticTokenCredential  # noqa: E402
from auditor.scan.base import AttributeNeeds  # noqa: E402

# Storage only: the benchmark measures blob storage (an AI listing would be one more call per run).
TRAINING_TAGS = AttributeNeeds(
    frozenset({"tags.ai-training"}), {kind: frozenset({"tags.ai-training"}) for kind in STORAGE_KINDS}
)
from tests.scan.azure.arm_server import ArmServer  # noqa: E402

SUBSCRIPTION = "33333333-3333-4333-8333-333333333333"
TOKEN = "benchmark-token"
REGIONS = [
    ("westeurope", "Standard_LRS"),
    ("northeurope", "Standard_GRS"),
    ("southeastasia", "Standard_RAGRS"),
    ("germanywestcentral", "Standard_ZRS"),
    ("francecentral", "Standard_GZRS"),
]


def key_of(name: str) -> str:
    return base64.b64encode(hashlib.sha256(name.encode()).digest()).decode()


def estate(accounts: int) -> dict[str, Any]:
    """ARM documents for `accounts` storage accounts in one subscription."""
    base = f"/subscriptions/{SUBSCRIPTION}"
    documents: dict[str, Any] = {}
    items = []
    for i in range(accounts):
        name = f"bench{i:03d}"
        location, sku = REGIONS[i % len(REGIONS)]
        encryption: dict[str, Any] = {
            "keySource": "Microsoft.Storage",
            "services": {"blob": {"enabled": True}},
        }
        if i % 10 == 0:
            encryption = {
                "keySource": "Microsoft.Keyvault",
                "keyvaultproperties": {"keyvaulturi": "https://benchkv.vault.azure.net/", "keyname": f"k{i}"},
            }
        account_id = f"{base}/resourceGroups/rg-bench/providers/Microsoft.Storage/storageAccounts/{name}"
        items.append(
            {
                "id": account_id,
                "name": name,
                "type": "Microsoft.Storage/storageAccounts",
                "location": location,
                "sku": {"name": sku, "tier": "Standard"},
                "kind": "StorageV2",
                "tags": {"data-class": "internal"},
                "properties": {
                    "minimumTlsVersion": "TLS1_2",
                    "supportsHttpsTrafficOnly": True,
                    "allowBlobPublicAccess": False,
                    "encryption": encryption,
                    "primaryEndpoints": {"blob": f"https://{name}.blob.core.windows.net/"},
                    "primaryLocation": location,
                },
            }
        )
        documents[f"{account_id}/encryptionScopes"] = {"value": []}
    documents[f"{base}/providers/Microsoft.Storage/storageAccounts"] = {"value": items}
    documents[f"{base}/resources"] = {
        "value": [
            {
                "id": f"{base}/resourceGroups/rg-keys/providers/Microsoft.KeyVault/vaults/benchkv",
                "name": "benchkv",
                "type": "Microsoft.KeyVault/vaults",
                "location": "westeurope",
            }
        ]
    }
    return documents


def start_azurite(location: Path, names: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    binary = REPO / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        sys.exit(f"{binary} is missing: run `npm ci` at the repository root")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "AZURITE_ACCOUNTS": ";".join(f"{n}:{key_of(n)}" for n in names)}
    process = subprocess.Popen(
        [
            str(binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(location),
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                sys.exit("azurite-blob did not start")
            time.sleep(0.1)


def populate(port: int, names: list[str], per_account: int) -> None:
    def one(name: str) -> None:
        client = BlobServiceClient(
            f"http://127.0.0.1:{port}/{name}", credential={"account_name": name, "account_key": key_of(name)}
        )
        with client:
            for c in range(per_account):
                metadata = {"ai_training": "opt-out"} if c % 3 == 0 else None
                client.create_container(f"data{c:03d}", metadata=metadata)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))


def run(
    arm: ArmServer, port: int, needs: AttributeNeeds, names: list[str], concurrency: int
) -> dict[str, Any]:
    arm.reset()
    scanner = AzureScanner(
        needs,
        load_zones([]),
        concurrency,
        subscriptions=[SUBSCRIPTION],
        credential=StaticTokenCredential(TOKEN),
        arm_endpoint=arm.base_url,
        blob_endpoint_template=f"http://127.0.0.1:{port}/{{account}}",
        ca_bundle=str(arm.ca_file),
        blob_credential="shared-key",
        account_keys={n: key_of(n) for n in names},
    )
    started = time.perf_counter()
    cpu = time.process_time()
    containers = sum(1 for r in scanner.scan() if isinstance(r, StorageResource) and r.kind == "container")
    seconds = time.perf_counter() - started
    calls = scanner.calls.snapshot()
    return {
        "containers": containers,
        "seconds": seconds,
        "client_cpu": time.process_time() - cpu,
        "calls": calls,
        "arm_requests": len(arm.requests),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--containers-per-account", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--arm-latency-ms", type=float, default=0.0, help="delay every ARM answer")
    args = parser.parse_args()
    names = [f"bench{i:03d}" for i in range(args.accounts)]
    with tempfile.TemporaryDirectory() as tmp:
        process, port = start_azurite(Path(tmp) / "azurite", names)
        try:
            started = time.perf_counter()
            populate(port, names, args.containers_per_account)
            print(
                f"estate: {args.accounts} accounts, {args.accounts * args.containers_per_account} containers "
                f"(Azurite populated in {time.perf_counter() - started:.1f}s); "
                f"concurrency {args.concurrency}, ARM latency {args.arm_latency_ms:.0f} ms"
            )
            with ArmServer(
                estate(args.accounts),
                token=TOKEN,
                cert_dir=Path(tmp),
                page_size=10,
                latency=args.arm_latency_ms / 1000,
            ) as arm:
                for label, needs in (
                    ("all attributes", AttributeNeeds.everything(*STORAGE_KINDS)),
                    ("training only (tags.ai-training)", TRAINING_TAGS),
                ):
                    result = run(arm, port, needs, names, args.concurrency)
                    total = sum(result["calls"].values())
                    n, seconds = result["containers"], result["seconds"]
                    print(f"\n{label}:")
                    print(f"  {n} containers in {seconds:.2f}s = {n / seconds:.0f} containers/s", end=" ")
                    print(f"(client CPU {result['client_cpu']:.2f}s)")
                    print(f"  {total} requests = {total / n:.3f} per container", end=" ")
                    print(f"(ARM server saw {result['arm_requests']})")
                    for op, count in sorted(result["calls"].items()):
                        print(f"    {op}: {count} ({count / n:.3f} per container)")
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
