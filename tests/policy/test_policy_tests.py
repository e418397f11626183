"""`auditor policy test`: shipped tests pass, a wrong expectation is reported, untested policies warned."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from auditor.policy_testing import run_policy_tests
from tests.conftest import SHIPPED_POLICIES

Cli = Callable[..., Result]


def test_shipped_policy_tests_pass_and_cover_every_policy(run_cli: Cli) -> None:
    result = run_cli("policy", "test", SHIPPED_POLICIES)
    assert result.exit_code == 0, result.output
    assert " 0 failed" in result.output
    run = run_policy_tests(SHIPPED_POLICIES)
    assert len(run.cases) >= 25 and run.untested_policies == []


def test_a_wrong_expectation_fails(run_cli: Cli, policy_dir: Path) -> None:
    test_file = policy_dir / "tests" / "transport_test.yaml"
    text = test_file.read_text()
    needle = "{policy: transport.plaintext-refused, resource: put-only, status: fail}"
    assert needle in text
    test_file.write_text(text.replace(needle, needle.replace("fail}", "pass}")))
    result = run_cli("policy", "test", policy_dir)
    assert result.exit_code == 1
    assert "FAIL S3 Deny on PutObject only" in result.output
    assert "expected pass, got fail" in result.output


def test_untested_policy_is_warned(run_cli: Cli, policy_dir: Path) -> None:
    (policy_dir / "tests" / "training_test.yaml").unlink()
    result = run_cli("policy", "test", policy_dir)
    assert result.exit_code == 0
    assert "no test case exercises: training.ai-training-consent" in result.stderr


def test_ai_policies_are_exercised_only_by_the_ai_tests(run_cli: Cli, policy_dir: Path) -> None:
    (policy_dir / "tests" / "ai_test.yaml").unlink()
    result = run_cli("policy", "test", policy_dir)
    assert result.exit_code == 0
    assert "no test case exercises: residency.processing-in-zone, training.provider-opt-out" in result.stderr


def test_bad_test_resource_names_its_line(run_cli: Cli, policy_dir: Path) -> None:
    test_file = policy_dir / "tests" / "training_test.yaml"
    test_file.write_text(test_file.read_text().replace("name: untagged", "name: untagged, colour: red", 1))
    result = run_cli("policy", "test", policy_dir)
    assert result.exit_code == 2
    assert "training_test.yaml:" in result.stderr and "colour" in result.stderr


def test_test_case_parameters_are_checked_where_they_are_written(run_cli: Cli, policy_dir: Path) -> None:
    test_file = policy_dir / "tests" / "residency_test.yaml"
    text = test_file.read_text()
    assert "parameters: {zone: us}" in text
    test_file.write_text(text.replace("parameters: {zone: us}", "parameters: {zone: atlantis}"))
    result = run_cli("policy", "test", policy_dir)
    assert result.exit_code == 2
    assert "residency_test.yaml:" in result.stderr and "unknown zone 'atlantis'" in result.stderr
    test_file.write_text(text.replace("parameters: {zone: us}", "parameters: {colour: red}"))
    result = run_cli("policy", "test", policy_dir)
    assert result.exit_code == 2
    assert (
        "residency_test.yaml:" in result.stderr
        and "no loaded policy declares parameter 'colour'" in result.stderr
    )


def test_list_parameter_given_as_text_in_a_test_case(run_cli: Cli, policy_dir: Path) -> None:
    test_file = policy_dir / "tests" / "encryption_test.yaml"
    text = test_file.read_text()
    needle = "parameters: {cmk_required_classes: [confidential, restricted]}"
    assert needle in text
    test_file.write_text(
        text.replace(needle, 'parameters: {cmk_required_classes: "confidential,restricted"}')
    )
    result = run_cli("policy", "test", policy_dir)
    assert result.exit_code == 0, result.output
