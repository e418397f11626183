"""Shared test helpers: run the CLI in-process, copy the shipped policies, write small files."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from auditor.cli import cli

REPO = Path(__file__).resolve().parents[1]
DEMO_INVENTORY = REPO / "fixtures" / "demo-estate.jsonl"
DEMO_WAIVERS = REPO / "fixtures" / "demo-waivers.yaml"
SHIPPED_POLICIES = REPO / "policies"


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke `auditor ARGS...` in-process and return the click Result (exit_code, stdout, stderr)."""

    def invoke(*args: str | Path) -> Result:
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A writable copy of the shipped policies (with tests and zones)."""
    target = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, target)
    return target
