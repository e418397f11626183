"""The operator table: docs, language and tests derived from it; Truth; value references; parameters."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path
from typing import Any, get_args

import pytest
from click.testing import Result

from auditor.errors import InputError
from auditor.evaluate import compile_policies
from auditor.findings import Truth
from auditor.policy.language import Leaf, Parameter, ParamRef, ZoneRef
from auditor.policy.loader import load_policies, load_zones
from auditor.policy.operators import ATTRIBUTE_KINDS, OPERATORS, operator_table_markdown
from tests.conftest import DEMO_INVENTORY, SHIPPED_POLICIES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "policy-language.md"


def _doc_operator_table() -> str:
    text = DOC.read_text()
    start = text.index("| `op` | `value` | Attribute kinds |")
    return text[start : text.index("\n\n", start)]


def test_the_docs_operator_table_is_the_generated_one() -> None:
    # Regenerate with: python -c "from auditor.policy.operators import operator_table_markdown as t; print(t())"
    assert _doc_operator_table() == operator_table_markdown()


def _ops_used_in_policy_tests() -> set[str]:
    """Operators that test cases in tests/policy use, as `leaf(attribute, "op", ...)` calls."""
    used: set[str] = set()
    for path in Path(__file__).parent.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "leaf":
                op = node.args[1] if len(node.args) > 1 else None
                if isinstance(op, ast.Constant) and isinstance(op.value, str):
                    used.add(op.value)
    return used


@pytest.mark.parametrize("name", list(OPERATORS))
def test_every_operator_has_a_docs_row_kinds_and_a_test_case(name: str) -> None:
    spec = OPERATORS[name]
    rows = [line for line in _doc_operator_table().splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1
    assert spec.kinds and spec.kinds <= set(ATTRIBUTE_KINDS)
    assert name in _ops_used_in_policy_tests(), f"no test case in tests/policy uses '{name}'"


def test_the_language_lists_the_table_in_order() -> None:
    assert get_args(Leaf.model_fields["op"].annotation) == tuple(OPERATORS)


# --- Truth ---------------------------------------------------------------------------------------

T, F, U = Truth.TRUE, Truth.FALSE, Truth.UNKNOWN


def test_truth_negate() -> None:
    assert (T.negate(), F.negate(), U.negate()) == (F, T, U)


@pytest.mark.parametrize(
    ("a", "b", "conjunction", "disjunction"),
    [
        (T, T, T, T),
        (T, F, F, T),
        (T, U, U, T),
        (F, F, F, F),
        (F, U, F, U),
        (U, U, U, U),
    ],
)
def test_truth_kleene_and_or(a: Truth, b: Truth, conjunction: Truth, disjunction: Truth) -> None:
    for x, y in ((a, b), (b, a)):
        assert x.and_(y) is conjunction and Truth.all_of([x, y]) is conjunction
        assert x.or_(y) is disjunction and Truth.any_of([x, y]) is disjunction


def test_truth_of_many_values() -> None:
    for values in itertools.product(Truth, repeat=3):
        expected_all = F if F in values else U if U in values else T
        expected_any = T if T in values else U if U in values else F
        assert Truth.all_of(values) is expected_all and Truth.any_of(values) is expected_any
    assert Truth.all_of([]) is T and Truth.any_of([]) is F


# --- {param: NAME} and {zone: NAME} --------------------------------------------------------------

POLICY = """\
policies:
  - id: t.refs
    title: t
    description: d
    severity: low
    parameters:
      zone: {type: zone, default: eu}
    condition:
      attribute: location.regions
      op: subset_of
      value: VALUE
"""


def test_references_are_models() -> None:
    leaf = Leaf.model_validate(
        {"attribute": "location.regions", "op": "subset_of", "value": {"zone": {"param": "zone"}}}
    )
    assert leaf.value == ZoneRef(zone=ParamRef(param="zone"))
    assert Leaf.model_validate({"attribute": "a", "op": "in", "value": {"param": "p"}}).value == ParamRef(
        param="p"
    )
    assert Leaf.model_validate({"attribute": "a", "op": "in", "value": ["x"]}).value == ["x"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{colour: red}", "a value mapping must be {param: NAME} or {zone: NAME}"),
        ("{zone: eu, param: zone}", "a value mapping must be {param: NAME} or {zone: NAME}"),
        ("{zone: {colour: red}}", "a value mapping must be {param: NAME} or {zone: NAME}"),
        ("{param: nope}", "parameter 'nope' is not declared in the policy's parameters"),
        ("{zone: {param: nope}}", "parameter 'nope' is not declared in the policy's parameters"),
        ("{param: [zone]}", "Input should be a valid string"),
    ],
)
def test_bad_references_name_file_and_line_when_loading(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.replace("VALUE", value))
    with pytest.raises(InputError) as raised:
        load_policies([path])
    assert raised.value.where == f"{path}:11"
    assert message in raised.value.message


def test_unknown_zone_names_file_and_line_when_compiling(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.replace("VALUE", "{zone: atlantis}"))
    with pytest.raises(InputError) as raised:
        compile_policies(load_policies([path]), load_zones([SHIPPED_POLICIES]), {})
    assert raised.value.where == f"{path}:11"
    assert raised.value.message.startswith("unknown zone 'atlantis' (known: ")


# --- parameters ----------------------------------------------------------------------------------

TLS_POLICY = """\
policies:
  - id: t.tls
    title: t
    description: d
    severity: low
    parameters:
      min_tls:
        type: version
        default: "1.2"
    condition: {attribute: transport.min_tls_version, op: gte, value: {param: min_tls}}
"""


@pytest.mark.parametrize("given", ["1.3x", "latest", "1.2.3.4", ""])
def test_a_version_parameter_rejects_a_non_version_at_the_param(tmp_path: Path, given: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(TLS_POLICY)
    with pytest.raises(InputError) as raised:
        compile_policies(load_policies([path]), load_zones([SHIPPED_POLICIES]), {"min_tls": given})
    assert str(raised.value) == (
        f"--param min_tls={given}: 'min_tls' takes a version such as '1.2', got {given!r}"
    )


@pytest.mark.parametrize("given", ["1.3", "1", "1.2.1", "TLS1_3", "TLSv1.3"])
def test_a_version_parameter_takes_versions(tmp_path: Path, given: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(TLS_POLICY)
    compiled = compile_policies(load_policies([path]), load_zones([SHIPPED_POLICIES]), {"min_tls": given})
    assert compiled[0].parameters == {"min_tls": given}


def test_a_bad_version_param_exits_2_in_one_line(run_cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(TLS_POLICY)
    out = tmp_path / "findings.json"
    for given in ("1.3x", "latest"):
        result: Result = run_cli(
            "check",
            "--inventory",
            DEMO_INVENTORY,
            "--policies",
            path,
            "--param",
            f"min_tls={given}",
            "-o",
            out,
        )
        assert result.exit_code == 2
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and f"--param min_tls={given}: 'min_tls' takes a version" in lines[0]
        assert str(path) not in lines[0]  # blamed on the argument, not on the policy file
        assert not out.exists()


@pytest.mark.parametrize(
    ("kind", "default", "message"),
    [
        ("version", '"latest"', "default: 'p' takes a version such as '1.2', got 'latest'"),
        ("version", "1.3", "default: 'p' takes a version such as '1.2', got 1.3"),
        ("integer", "many", "default: 'p' takes an integer"),
        ("boolean", "[true]", "default: 'p' takes true or false"),
        ("list", "{a: b}", "default: 'p' takes a list of strings (or comma-separated text)"),
        ("string", "[a]", "default: 'p' takes a string"),
    ],
)
def test_a_default_must_fit_its_type(tmp_path: Path, kind: str, default: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "policies:\n  - id: t.p\n    title: t\n    description: d\n    severity: low\n"
        f"    parameters:\n      p:\n        type: {kind}\n        default: {default}\n"
        "    condition: {attribute: tags.owner, op: exists}\n"
    )
    with pytest.raises(InputError) as raised:
        load_policies([path])
    assert str(raised.value) == f"{path}:9: {message}"


@pytest.mark.parametrize(
    ("kind", "raw", "value"),
    [
        ("string", "x", "x"),
        ("list", " a, b ,, c", ["a", "b", "c"]),
        ("list", ["a"], ["a"]),
        ("integer", "12", 12),
        ("integer", 12, 12),
        ("boolean", "TRUE", True),
        ("boolean", False, False),
        ("zone", "uk", "uk"),
        ("version", "1.3", "1.3"),
    ],
)
def test_parameter_values_convert_text_and_check_yaml(kind: str, raw: Any, value: Any) -> None:
    assert Parameter.model_validate({"type": kind}).value_of("p", raw, {"eu", "uk"}) == value


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        ("integer", "1.5", "'p' takes an integer"),
        ("integer", True, "'p' takes an integer"),
        ("boolean", "yes", "'p' takes true or false"),
        ("zone", "mars", "unknown zone 'mars' (known: eu, uk)"),
        ("zone", 5, "'p' takes a zone name"),
    ],
)
def test_parameter_value_errors(kind: str, raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        Parameter.model_validate({"type": kind}).value_of("p", raw, {"eu", "uk"})


def test_the_default_expectation_spells_references_as_written(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.replace("VALUE", "{zone: {param: zone}}"))
    compiled = compile_policies(load_policies([path]), load_zones([SHIPPED_POLICIES]), {})
    assert compiled[0].expected == "location.regions subset_of {'zone': {'param': 'zone'}}"
