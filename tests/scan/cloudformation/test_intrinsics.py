"""The template reader and the intrinsic functions: short forms, lines, what resolves and what stays unknown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditor.errors import InputError
from auditor.model import UnknownCode
from auditor.scan.cloudformation_intrinsics import NO_VALUE, Resolver, Stack, Unresolved, parameter_values
from auditor.scan.cloudformation_template import load_parameters, load_template

TEMPLATE = """\
Parameters:
  Env: {Type: String, Default: dev}
  Names: {Type: CommaDelimitedList, Default: "a, b,c"}
  Secret: {Type: "AWS::SSM::Parameter::Value<String>", Default: /acme/bucket}
  NoDefault: {Type: String}
Mappings:
  Regions:
    eu-west-1: {Short: euw1}
Conditions:
  IsDev: !Equals [!Ref Env, dev]
  Unknowable: !Equals [!Ref NoDefault, x]
  DevOrUnknowable: !Or [!Condition IsDev, !Condition Unknowable]
  NotDevAndUnknowable: !And [!Not [!Condition IsDev], !Condition Unknowable]
  DevAndUnknowable: !And [!Condition IsDev, !Condition Unknowable]
Resources:
  Named:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: acme-named
  Generated:
    Type: AWS::S3::Bucket
  Key:
    Type: AWS::KMS::Key
"""


@pytest.fixture
def resolver(tmp_path: Path) -> Resolver:
    path = tmp_path / "t.yaml"
    path.write_text(TEMPLATE)
    template = load_template(path)
    resolver = Resolver(template, Stack("eu-west-1"), parameter_values(template, None))
    resolver.names["Named"] = "acme-named"
    return resolver


def value(resolver: Resolver, text: str) -> Any:
    """Resolve a YAML snippet written as a resource property."""
    path = resolver.template.path.with_name("snippet.yaml")
    path.write_text("Resources:\n  X:\n    Type: T\n    Properties:\n      V: " + text + "\n")
    snippet = load_template(path)
    return resolver.resolve(snippet.data["Resources"]["X"]["Properties"]["V"], ("Resources", "X"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!Sub acme-${Env}-${AWS::Region}", "acme-dev-eu-west-1"),
        ("!Sub ['${A}-${!Literal}', {A: !Ref Env}]", "dev-${Literal}"),
        ('!Join ["-", [!Ref Env, !FindInMap [Regions, !Ref "AWS::Region", Short]]]', "dev-euw1"),
        ("!Select [1, !Ref Names]", "b"),
        ('!Select [2, !Split [",", "x,y,z"]]', "z"),
        ("!Base64 abc", "YWJj"),
        ("!If [IsDev, small, large]", "small"),
        ("!If [DevOrUnknowable, one, two]", "one"),
        ("!If [NotDevAndUnknowable, one, two]", "two"),
        ("!GetAtt Named.Arn", "arn:aws:s3:::acme-named"),
        ("!GetAtt [Named, Arn]", "arn:aws:s3:::acme-named"),
        ("!Ref Named", "acme-named"),
        ('!Sub "${AWS::Partition}.${AWS::URLSuffix}"', "aws.amazonaws.com"),
        ("[a, !Ref AWS::NoValue, b]", ["a", "b"]),
        ("{Keep: 1, Drop: !If [IsDev, !Ref AWS::NoValue, 2]}", {"Keep": 1}),
    ],
)
def test_values_that_resolve(resolver: Resolver, text: str, expected: Any) -> None:
    assert value(resolver, text) == expected


@pytest.mark.parametrize(
    ("text", "code", "words"),
    [
        ("!GetAtt Generated.Arn", UnknownCode.NOT_KNOWN_UNTIL_APPLY, "AWS::S3::Bucket 'Generated'"),
        ("!Ref Key", UnknownCode.NOT_KNOWN_UNTIL_APPLY, "AWS::KMS::Key 'Key'"),
        ("!Ref NoDefault", UnknownCode.ERROR, "no value and no default"),
        ("!Ref Secret", UnknownCode.NOT_KNOWN_UNTIL_APPLY, "SSM parameter '/acme/bucket'"),
        ("!Ref AWS::AccountId", UnknownCode.ERROR, "--account"),
        ("!Sub ${AWS::StackName}-x", UnknownCode.ERROR, "--stack-name"),
        ("!Ref AWS::StackId", UnknownCode.NOT_KNOWN_UNTIL_APPLY, "AWS::StackId"),
        ("!ImportValue shared-key", UnknownCode.NOT_KNOWN_UNTIL_APPLY, "another stack"),
        ("!If [Unknowable, a, b]", UnknownCode.ERROR, "condition 'Unknowable' cannot be decided"),
        ("!If [DevAndUnknowable, a, b]", UnknownCode.ERROR, "cannot be decided"),
        (
            "!FindInMap [Regions, us-east-1, Short]",
            UnknownCode.ERROR,
            "Mappings has no Regions.us-east-1.Short",
        ),
        ("'{{resolve:ssm:/acme/name}}'", UnknownCode.NOT_KNOWN_UNTIL_APPLY, "dynamic reference"),
        ("!Cidr [10.0.0.0/16, 4, 8]", UnknownCode.NOT_SUPPORTED, "Fn::Cidr"),
        ("!Join ['', [a, !GetAtt Key.Arn]]", UnknownCode.NOT_KNOWN_UNTIL_APPLY, "Arn of AWS::KMS::Key"),
    ],
)
def test_values_that_stay_unknown(resolver: Resolver, text: str, code: UnknownCode, words: str) -> None:
    result = value(resolver, text)
    assert isinstance(result, Unresolved), result
    assert result.code == code and words in result.reason


def test_a_reference_to_a_template_resource_names_it(resolver: Resolver) -> None:
    result = value(resolver, "!GetAtt Key.Arn")
    assert isinstance(result, Unresolved) and result.refers_to == "Key"
    assert value(resolver.with_stand_ins({"Generated": "Generated"}), "!GetAtt Generated.Arn") == (
        "arn:aws:s3:::Generated"
    )
    assert value(resolver, "!Ref AWS::NoValue") is NO_VALUE


def test_lines_of_yaml_and_json_templates(tmp_path: Path) -> None:
    yaml_path = tmp_path / "t.yaml"
    yaml_path.write_text(
        "# comment\nResources:\n  B:\n    Type: AWS::S3::Bucket\n    Properties:\n      BucketName: !Sub x\n"
    )
    template = load_template(yaml_path)
    assert template.line_of(("Resources", "B")) == 3
    assert template.line_of(("Resources", "B", "Properties", "BucketName", "Fn::Sub")) == 6
    json_path = tmp_path / "t.json"
    json_path.write_text(
        '{\n  "Resources": {\n    "B": {\n      "Type": "AWS::S3::Bucket",\n      "Properties": {"Tags": [\n'
        '        {"Key": "a", "Value": "b"},\n        {"Key": "c", "Value": "d"}]}}}}\n'
    )
    template = load_template(json_path)
    assert template.line_of(("Resources", "B")) == 3
    assert template.line_of(("Resources", "B", "Properties", "Tags", 1, "Value")) == 7
    assert template.data["Resources"]["B"]["Properties"]["Tags"][1] == {"Key": "c", "Value": "d"}


def test_parameters_in_each_form(tmp_path: Path) -> None:
    listed = tmp_path / "list.json"
    listed.write_text(
        '[{"ParameterKey": "A", "ParameterValue": "1"},\n {"ParameterKey": "B", "UsePreviousValue": true}]'
    )
    given = load_parameters(listed)
    assert given.values == {"A": "1", "B": None}
    assert given.where["B"] == f"{listed}:2"
    mapped = tmp_path / "map.json"
    mapped.write_text('{"A": 1, "L": ["x", "y"], "T": true}')
    assert load_parameters(mapped).values == {"A": "1", "L": "x,y", "T": "true"}
    pipeline = tmp_path / "pipeline.json"
    pipeline.write_text('{"Parameters": {"A": "v"}}')
    assert load_parameters(pipeline).values == {"A": "v"}
    bad = tmp_path / "bad.json"
    bad.write_text('[{"ParameterKey": "A"}]')
    with pytest.raises(InputError, match="has no ParameterValue"):
        load_parameters(bad)


def test_deep_json_nesting_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"Resources":\n' + "[" * 300 + "]" * 300 + "}")
    with pytest.raises(InputError, match=r"deep.json:2: nested deeper than 200 levels"):
        load_template(path)
