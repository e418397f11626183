"""Policy unit tests (`auditor policy test`): YAML cases of input resources and expected statuses.

A policy directory keeps its tests in ``tests/*.yaml`` beside the policies, like `opa test`.
It runs policies, so it sits above both: policy -> evaluate -> policy_testing (auditor.policy
never imports auditor.evaluate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pydantic import ValidationError

from auditor.attestations import expire_attestations
from auditor.evaluate import Evaluator, WaiverBook, compile_policies
from auditor.findings import Finding
from auditor.model import StorageResource
from auditor.policy.language import PolicyTestCase, PolicyTestFile
from auditor.policy.loader import LoadedPolicy, LoadedWaiver, load_policies, load_zones
from auditor.policy.yamlfile import YamlDocument, load_yaml
from auditor.policy.zones import ZoneCatalog
from auditor.sources import normalize_record


@dataclass
class CaseResult:
    """The outcome of one test case."""

    file: str
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every expectation held."""
        return not self.failures


@dataclass
class TestRun:
    """All case results, and the policies no case exercised."""

    cases: list[CaseResult] = field(default_factory=list)
    untested_policies: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every case passed."""
        return all(case.passed for case in self.cases)


def _test_files(directory: Path) -> list[Path]:
    tests = directory / "tests"
    return sorted([*tests.glob("*.yaml"), *tests.glob("*.yml")]) if tests.is_dir() else []


def _load_resources(
    doc: YamlDocument, case_index: int, raw: list[dict[str, object]]
) -> list[StorageResource]:
    resources = []
    for index, item in enumerate(raw):
        base = ("tests", case_index, "resources", index)
        try:
            resource = StorageResource.model_validate(item)
        except ValidationError as exc:
            raise doc.validation_error(exc, base) from exc
        # Derived fields (an S3 bucket policy's transport verdict) as when an inventory is read.
        resources.append(normalize_record(resource, doc.where(base)))
    return resources


def run_policy_tests(directory: Path) -> TestRun:
    """Run every test case found in `directory/tests` against the policies in `directory`."""
    loaded = load_policies([directory])
    catalog = load_zones([directory])
    run = TestRun()
    exercised: set[str] = set()
    for file in _test_files(directory):
        doc = load_yaml(file)
        try:
            parsed = PolicyTestFile.model_validate(doc.data)
        except ValidationError as exc:
            raise doc.validation_error(exc) from exc
        for case_index, case in enumerate(parsed.tests):
            result = CaseResult(doc.where(("tests", case_index)), case.name)
            resources = _load_resources(doc, case_index, case.resources)
            findings = _evaluate_case(loaded, catalog, case, resources, doc, case_index)
            for expect in case.expect:
                exercised.add(expect.policy)
                matching = [
                    f
                    for f in findings
                    if f.policy_id == expect.policy and expect.resource in (f.resource.id, f.resource.name)
                ]
                actual = matching[0].status.value if matching else "none"
                if actual != expect.status:
                    detail = f" ({matching[0].message})" if matching else ""
                    result.failures.append(
                        f"{expect.policy} on {expect.resource}: "
                        f"expected {expect.status}, got {actual}{detail}"
                    )
            run.cases.append(result)
    run.untested_policies = sorted({entry.policy.id for entry in loaded} - exercised)
    return run


def _evaluate_case(
    loaded: list[LoadedPolicy],
    catalog: ZoneCatalog,
    case: PolicyTestCase,
    resources: list[StorageResource],
    doc: YamlDocument,
    case_index: int,
) -> list[Finding]:
    compiled = compile_policies(
        loaded,
        catalog,
        dict(case.parameters),
        where=lambda name: doc.where(("tests", case_index, "parameters", name)),
    )
    waivers = [
        LoadedWaiver(w, doc.where(("tests", case_index, "waivers", i)), w.id or f"case-waiver-{i + 1}")
        for i, w in enumerate(case.waivers)
    ]
    today = case.today or date.today()
    book = WaiverBook(waivers, today) if waivers else None
    evaluator = Evaluator(compiled, book)
    for resource in resources:
        expire_attestations(resource, today)
    return [finding for resource in resources for finding in evaluator.evaluate(resource)]
