"""Command-line conventions: results on stdout, diagnostics on stderr, `--quiet`, list options
repeated or comma-separated, a group's options after its subcommand, exit codes in every --help."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from auditor.cli import LAZY_COMMANDS, cli
from auditor.cli_options import split_list
from auditor.sources import source_names
from tests.conftest import DEMO_INVENTORY, REPO

Cli = Callable[..., Result]
CFN = REPO / "fixtures" / "iac" / "cloudformation"

# Multi-value options that only repeat, and why their values may not be split at commas.
REPEAT_ONLY = {
    "--param": "a value may hold commas (cmk_required_classes=restricted,confidential)",
    "--policies": "paths",
    "--attestations": "paths",
    "--api-endpoint": "URLs",
    "--ignore-tag": "tag keys may hold commas (Azure)",
}


def _walk(
    command: click.Command, path: tuple[str, ...], ctx: click.Context
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, (path, name)
            yield from _walk(sub, (*path, name), click.Context(sub, info_name=name, parent=ctx))


COMMANDS = dict(_walk(cli, (), click.Context(cli, info_name="auditor")))


def test_the_walk_reaches_every_registered_command() -> None:
    top = {path[0] for path in COMMANDS if len(path) == 1}
    assert top >= {*LAZY_COMMANDS, "check", "scan", "policy"}
    assert {path[1] for path in COMMANDS if path[:1] == ("scan",) and len(path) == 2} == set(source_names())
    assert ("history", "list") in COMMANDS and ("policy", "test") in COMMANDS


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda path: " ".join(path) or "auditor")
def test_every_help_ends_with_its_exit_codes(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    _, marker, codes = result.stdout.rstrip().rpartition("Exit codes:")
    assert marker, f"`auditor {' '.join(path)} --help` does not say its exit codes"
    lines = [line.strip() for line in codes.strip().splitlines()]
    assert lines and all(re.fullmatch(r"[0-3]  \S.*", line) for line in lines), lines  # nothing after them
    numbers = [int(line[0]) for line in lines]
    assert numbers == sorted(set(numbers)) and 0 in numbers and 2 in numbers
    assert "2  bad input or usage" in codes


def test_every_multi_value_option_takes_commas_unless_its_values_may_hold_them() -> None:
    seen = set()
    for path, command in COMMANDS.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.multiple:
                name = param.opts[0]
                seen.add(name)
                if param.callback is not split_list:
                    assert name in REPEAT_ONLY, (
                        f"auditor {' '.join(path)} {name}: use cli_options.list_option"
                    )
    assert {"--regions", "--profile", "--project", "--subscription", "--policy", "--framework"} <= seen


def test_list_values_are_split_at_commas_and_repeats_add_up(run_cli: Cli, tmp_path: Path) -> None:
    chosen = ["residency.data-in-zone", "transport.tls-minimum", "training.ai-training-consent"]
    result = run_cli(
        "check", "--inventory", DEMO_INVENTORY, "--format", "json", "-o", tmp_path / "f.json",
        "--policy", f"{chosen[0]}, {chosen[1]}", "--policy", chosen[2],
    )  # fmt: skip
    assert result.exit_code in (1, 3), result.output
    document = json.loads((tmp_path / "f.json").read_text())
    assert sorted(p["id"] for p in document["run"]["policies"]) == sorted(chosen)
    # each value is judged alone: the unknown one is named, not the whole comma list
    refused = run_cli("permissions", "aws", "--scan-option", "regions,no-such-option")
    assert refused.exit_code == 2
    assert "aws has no option 'no-such-option'" in refused.stderr


def test_check_writes_its_result_to_stdout_and_keeps_a_json_stdout_pure(run_cli: Cli, tmp_path: Path) -> None:
    table = run_cli("check", "--inventory", DEMO_INVENTORY)
    assert table.exit_code == 1 and table.stderr == ""
    assert table.stdout.rstrip().splitlines()[-1] == "gate (fail-on info): exit 1"

    document = run_cli("check", "--inventory", DEMO_INVENTORY, "--format", "json")
    assert document.exit_code == 1
    assert json.loads(document.stdout)["run"]["gate"]["exit_code"] == 1  # nothing but the document
    assert document.stderr.splitlines()[-1] == "gate (fail-on info): exit 1"

    written = run_cli("check", "--inventory", DEMO_INVENTORY, "--format", "json", "-o", tmp_path / "f.json")
    assert written.exit_code == 1 and written.stderr == ""
    lines = written.stdout.splitlines()
    assert lines[0] == f"findings written to {tmp_path / 'f.json'}"
    assert lines[-1] == "gate (fail-on info): exit 1"

    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    incomplete = run_cli("check", "--inventory", empty, "--format", "json")
    assert incomplete.exit_code == 3 and json.loads(incomplete.stdout)["findings"] == []
    assert incomplete.stderr.splitlines()[-1].startswith("incomplete: 0 resources evaluated")


def test_scan_and_report_print_their_result_on_stdout(run_cli: Cli, tmp_path: Path) -> None:
    inventory = tmp_path / "inv.jsonl"
    scanned = run_cli(
        "scan", "cloudformation", CFN / "data-lake.yaml", "--region", "eu-west-1",
        "--parameters", CFN / "data-lake.parameters.json", "--no-progress", "-o", inventory,
    )  # fmt: skip
    assert scanned.exit_code == 0 and scanned.stderr == ""
    assert scanned.stdout.splitlines()[0] == f"inventory written to {inventory}"
    assert re.search(r"^scan cloudformation: \d+ resources, 0 coverage gaps", scanned.stdout, re.M)

    findings = tmp_path / "f.json"
    assert run_cli("check", "--inventory", inventory, "--format", "json", "-o", findings).exit_code in (0, 1)
    report = tmp_path / "r.md"
    reported = run_cli("report", "--findings", findings, "--format", "markdown", "-o", report)
    assert reported.exit_code == 0 and reported.stderr == ""
    assert reported.stdout == f"markdown report written to {report}\n"


def test_quiet_silences_diagnostics_wherever_it_is_given(run_cli: Cli, policy_dir: Path) -> None:
    (policy_dir / "tests" / "training_test.yaml").unlink()  # `policy test` warns on stderr
    warning = "warning: no test case exercises: training.ai-training-consent"
    loud = run_cli("policy", "test", policy_dir)
    assert loud.exit_code == 0 and warning in loud.stderr
    summary = loud.stdout.splitlines()[-1]
    assert re.fullmatch(r"\d+ cases passed, 0 failed", summary)
    for args in (
        ("--quiet", "policy", "test", policy_dir),
        ("policy", "-q", "test", policy_dir),
        ("policy", "test", policy_dir, "--quiet"),
    ):
        quiet = run_cli(*args)
        assert quiet.exit_code == 0 and quiet.stderr == "", args
        assert quiet.stdout == loud.stdout, args  # the result is not silenced
    assert warning in run_cli("policy", "test", policy_dir).stderr  # quiet ended with its command
    # errors are never silenced
    missing = run_cli("-q", "check", "--inventory", policy_dir / "missing.jsonl")
    assert missing.exit_code == 2 and "missing.jsonl" in missing.stderr


def _leave_a_killed_runs_spool(out: Path) -> Path:
    """A findings spool a killed run left a day ago: the next audit removes it and says so (stderr)."""
    out.mkdir(parents=True, exist_ok=True)
    spool = out / ".findings.abcd1234.spool"
    spool.write_text("left over")
    day_ago = time.time() - 86400
    os.utime(spool, (day_ago, day_ago))
    return spool


def test_audit_result_on_stdout_and_history_options_after_the_subcommand(
    run_cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    config = tmp_path / "auditor.yaml"
    config.write_text(
        f"name: conventions\ninventories: [{DEMO_INVENTORY}]\noutputs: {{directory: {out}, formats: [json]}}\n"
    )
    spool = _leave_a_killed_runs_spool(out)
    loud = run_cli("audit", "--config", config)
    assert loud.exit_code == 1, loud.output
    lines = loud.stdout.splitlines()
    assert lines[0].startswith("run ") and lines[-1] == "gate (fail-on info): exit 1"
    assert "temporary file(s) left by killed runs" in loud.stderr and "gate" not in loud.stderr
    assert not spool.exists()
    spool = _leave_a_killed_runs_spool(out)
    quiet = run_cli("audit", "--config", config, "--quiet")
    assert quiet.exit_code == 1 and quiet.stderr == "" and not spool.exists()
    assert quiet.stdout.splitlines()[-1] == "gate (fail-on info): exit 1"

    database = out / "history.db"
    before = run_cli("history", "--database", database, "list")
    after = run_cli("history", "list", "--database", database)
    assert before.exit_code == after.exit_code == 0, after.output
    assert after.stdout == before.stdout and len(after.stdout.splitlines()) == 3  # header and two runs
    # given after the subcommand, the option wins over the config's database and the default one
    elsewhere = run_cli("history", "--config", config, "list", "--database", tmp_path / "none.db")
    assert elsewhere.exit_code == 2 and str(tmp_path / "none.db") in elsewhere.stderr
    by_config = run_cli("history", "show", "latest", "--config", config, "--format", "json")
    assert by_config.exit_code == 0 and json.loads(by_config.stdout)["run"]["gate"]["exit_code"] == 1

    bundle = next((out / "bundles").iterdir())
    verified = run_cli("verify", bundle)
    assert verified.exit_code == 0 and verified.stdout.startswith(f"OK {bundle}:") and verified.stderr == ""
