"""The two small parsers under the ARM scanner: JSON with line numbers, and template expressions."""

from __future__ import annotations

import pytest

from auditor.errors import InputError
from auditor.model import UnknownCode
from auditor.scan.arm_expressions import ExpressionError, Scope, Unresolved, parse_expression
from auditor.scan.located_json import MAX_DEPTH, LocatedDict, LocatedList, parse_located


def test_objects_and_arrays_carry_their_lines() -> None:
    text = '{\n  "a": 1,\n  // a comment\n  "list": [\n    {"x": "y"},\n    /* two */ 2\n  ]\n}\n'
    doc = parse_located(text, "t.json")
    assert isinstance(doc, LocatedDict) and doc.line == 1
    assert doc.line_of("a") == 2 and doc.line_of("list") == 4
    items = doc["list"]
    assert isinstance(items, LocatedList) and items.line == 4
    assert items.item_lines == [5, 6]
    assert items[0].line == 5 and items[0] == {"x": "y"}
    assert doc == {"a": 1, "list": [{"x": "y"}, 2]}


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ('{\n  "a": [1,\n', "t.json:2", "is the file truncated?"),
        ('{\n  "a": 1\n  "b": 2\n}', "t.json:3", "expected ',' or '}'"),
        ("{\n  'a': 1\n}", "t.json:2", "property name in double quotes"),
        ('{"a": 1} x', "t.json:1", "unexpected text after the document"),
        ('"\\q"', "t.json:1", "invalid string"),
    ],
)
def test_bad_json_names_its_line(text: str, where: str, words: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_located(text, "t.json")
    assert caught.value.where == where
    assert words in caught.value.message


def test_nesting_is_bounded() -> None:
    with pytest.raises(InputError, match="nested deeper"):
        parse_located("[" * (MAX_DEPTH + 2), "t.json")


def scope(**supplied: object) -> Scope:
    return Scope(
        parameters={"name": {"type": "string"}, "sku": {"defaultValue": "[toUpper('standard_grs')]"}},
        parameter_lines={},
        supplied=dict(supplied),
        variables={
            "prefix": "acme",
            "full": "[concat(variables('prefix'), parameters('name'))]",
            "loop": "[variables('loop')]",
        },
        variable_lines={},
        user_functions=frozenset({"acme.name"}),
        location="westeurope",
        subscription=None,
        resource_group=None,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[format('{0}/default/{1}', parameters('name'), 'logs')]", "data/default/logs"),
        ("[variables('full')]", "acmedata"),
        ("[toLower('ABC')]", "abc"),
        ("[parameters('sku')]", "STANDARD_GRS"),
        ("[resourceGroup().location]", "westeurope"),
        ("[if(equals(parameters('name'), 'data'), 'yes', 'no')]", "yes"),
        ("[concat(createArray(1), createArray(2))]", [1, 2]),
        ("[[literal]", "[literal]"),
        ("plain", "plain"),
        ("[string(true())]", "True"),
        ("[format('{0}-{{x}}', 'a')]", "a-{x}"),
    ],
)
def test_expressions_evaluate(text: str, expected: object) -> None:
    assert scope(name="data").evaluate_text(text) == expected


@pytest.mark.parametrize(
    ("text", "code", "words"),
    [
        ("[uniqueString(resourceGroup().id)]", UnknownCode.NOT_KNOWN_UNTIL_APPLY, "deployed"),
        ("[concat('logs', uniqueString('x'))]", UnknownCode.NOT_KNOWN_UNTIL_APPLY, "uniqueString()"),
        ("[reference('kv').vaultUri]", UnknownCode.NOT_KNOWN_UNTIL_APPLY, "reference()"),
        ("[parameters('name')]", UnknownCode.NOT_KNOWN_UNTIL_APPLY, "no defaultValue"),
        ("[resourceGroup().name]", UnknownCode.NOT_KNOWN_UNTIL_APPLY, "--resource-group"),
        ("[split('a/b', '/')[0]]", UnknownCode.NOT_SUPPORTED, "split()"),
        ("[acme.name()]", UnknownCode.NOT_SUPPORTED, "user-defined"),
    ],
)
def test_what_only_a_deployment_knows_is_unresolved(text: str, code: UnknownCode, words: str) -> None:
    value = scope().evaluate_text(text)
    assert isinstance(value, Unresolved)
    assert value.code == code and words in value.reason


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[toLowerCase('A')]", "unknown template function 'toLowerCase'"),
        ("[other.name()]", "unknown template function 'other.name'"),
        ("[concat('a']", "expected ','"),
        ("[parameters('nope')]", "parameter 'nope' is not declared"),
        ("[variables('loop')]", "refers to itself"),
        ("[format('{3}', 'a')]", "has no argument"),
        ("[concat('a') 'b']", "after the expression"),
    ],
)
def test_invalid_expressions_are_errors(text: str, words: str) -> None:
    with pytest.raises(ExpressionError, match=words.replace("(", r"\(").replace(")", r"\)")):
        scope().evaluate_text(text)


def test_expressions_are_bounded() -> None:
    with pytest.raises(ExpressionError, match="longer than"):
        parse_expression("[" + "concat(" * 5000 + "]")
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse_expression("[" + "concat(" * 100 + "'a'" + ")" * 100 + "]")
