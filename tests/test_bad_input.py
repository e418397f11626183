"""Every kind of bad input: one line naming file:line (or the argument), exit 2, no output file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.conftest import DEMO_INVENTORY

Cli = Callable[..., Result]

GOOD_POLICY = """\
policies:
  - id: custom.tagged
    title: Tagged
    description: Has an owner tag.
    severity: low
    condition:
      attribute: tags.owner
      op: exists
"""


@pytest.fixture(scope="module")
def demo_findings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A findings document of the demo estate, for the `report` command's inputs."""
    from click.testing import CliRunner

    from auditor.cli import cli

    out = tmp_path_factory.mktemp("findings") / "findings.json"
    args = ["check", "--inventory", str(DEMO_INVENTORY), "--format", "json", "-o", str(out)]
    CliRunner().invoke(cli, args, catch_exceptions=False)
    assert out.is_file()
    return out


def _check(
    run_cli: Cli, tmp_path: Path, *extra: str | Path, inventory: Path = DEMO_INVENTORY
) -> tuple[Result, Path]:
    out = tmp_path / "out" / "findings.json"
    out.parent.mkdir(exist_ok=True)
    result = run_cli("check", "--inventory", inventory, "--format", "json", "--output", out, *extra)
    return result, out


def _assert_rejected(result: Result, out: Path, where: str, what: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert where in lines[0] and what in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir()], "no temporary file may be left behind"


@pytest.mark.parametrize(
    ("replace", "by", "line", "what"),
    [
        pytest.param(
            "      op: exists\n", "      op: exists\n    bogus: [\n", 10, "invalid YAML", id="malformed-yaml"
        ),
        pytest.param(
            "    severity: low\n",
            "    severity: low\n    colour: red\n",
            6,
            "Extra inputs are not permitted",
            id="unknown-field",
        ),
        pytest.param("    severity: low\n", "    severity: [low]\n", 5, "severity", id="wrong-type"),
        pytest.param(
            "      op: exists\n",
            "      op: matches\n      value: '(unclosed'\n",
            9,
            "invalid regular expression",
            id="bad-regex",
        ),
        pytest.param(
            "      attribute: tags.owner\n      op: exists\n",
            "      attribute: location.regions\n      op: subset_of\n      value: {zone: atlantis}\n",
            9,
            "unknown zone 'atlantis'",
            id="unknown-zone",
        ),
        pytest.param(
            "      op: exists\n", "      op: roughly\n", 8, "Input should be 'equals'", id="unknown-operator"
        ),
        pytest.param(
            "tags.owner",
            "location.continent",
            7,
            "unknown attribute path 'location.continent'",
            id="unknown-attribute",
        ),
        pytest.param("title: Tagged", "title: [", 5, "flow sequence at line 3", id="unclosed-flow"),
        pytest.param(
            "      attribute: tags.owner\n      op: exists\n",
            "      attribute: location.regions\n      op: in\n      value: [eu-west-1]\n",
            9,
            "'in' does not apply to list attribute 'location.regions'",
            id="operator-for-wrong-kind",
        ),
        pytest.param(
            "      attribute: tags.owner\n      op: exists\n",
            "      attribute: location.primary\n      op: equals\n      value: {zone: eu}\n",
            9,
            "a zone value goes with in, not_in or subset_of",
            id="zone-with-equals",
        ),
        pytest.param(
            "      attribute: tags.owner\n      op: exists\n",
            "      attribute: encryption.enabled\n      op: equals\n      value: 'yes'\n",
            9,
            "compare it with true or false",
            id="bool-compared-to-text",
        ),
    ],
)
def test_bad_policy(run_cli: Cli, tmp_path: Path, replace: str, by: str, line: int, what: str) -> None:
    assert replace in GOOD_POLICY
    policy = tmp_path / "custom.yaml"
    policy.write_text(GOOD_POLICY.replace(replace, by))
    result, out = _check(run_cli, tmp_path, "--policies", policy)
    _assert_rejected(result, out, f"{policy}:{line}", what)


def test_good_policy_runs(run_cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "custom.yaml"
    policy.write_text(GOOD_POLICY)
    result, out = _check(run_cli, tmp_path, "--policies", policy)
    assert result.exit_code in (0, 1, 3) and out.exists()


def test_duplicate_policy_id(run_cli: Cli, tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(GOOD_POLICY)
    second.write_text("# another file\n" + GOOD_POLICY)
    result, out = _check(run_cli, tmp_path, "--policies", first, "--policies", second)
    _assert_rejected(result, out, f"{second}:3", "duplicate policy id 'custom.tagged'")


def test_duplicate_yaml_key(run_cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "custom.yaml"
    policy.write_text(GOOD_POLICY.replace("    severity: low\n", "    severity: low\n    severity: high\n"))
    result, out = _check(run_cli, tmp_path, "--policies", policy)
    _assert_rejected(result, out, f"{policy}:6", "duplicate key 'severity'")


WAIVER = """\
waivers:
  - id: W-1
    policy: transport.*
    resources: {names: [exports]}
    justification: legacy
    approver: ciso@example.com
    expires: 2027-01-31
"""


@pytest.mark.parametrize(
    ("replace", "by", "line", "what"),
    [
        pytest.param("    approver: ciso@example.com\n", "", 2, "approver", id="missing-approver"),
        pytest.param("expires: 2027-01-31", "expires: 31/01/2027", 7, "YYYY-MM-DD", id="date-format"),
        pytest.param("expires: 2027-01-31", "expires: 2027-02-30", 7, "invalid value", id="impossible-date"),
        pytest.param(
            "resources: {names: [exports]}", "resources: {}", 4, "at least one of", id="empty-selector"
        ),
        pytest.param(
            "    policy: transport.*\n",
            "    policy: transport.*\n    reason: x\n",
            4,
            "Extra inputs",
            id="unknown-field",
        ),
    ],
)
def test_bad_waiver(run_cli: Cli, tmp_path: Path, replace: str, by: str, line: int, what: str) -> None:
    assert replace in WAIVER
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(WAIVER.replace(replace, by))
    result, out = _check(run_cli, tmp_path, "--waivers", waivers)
    _assert_rejected(result, out, f"{waivers}:{line}", what)


def test_truncated_inventory_line(run_cli: Cli, tmp_path: Path) -> None:
    lines = DEMO_INVENTORY.read_text().splitlines()
    inventory = tmp_path / "inv.jsonl"
    inventory.write_text("\n".join([*lines[:5], lines[5][: len(lines[5]) // 2]]) + "\n")
    result, out = _check(run_cli, tmp_path, inventory=inventory)
    _assert_rejected(result, out, f"{inventory}:6", "invalid JSON")


def test_invalid_inventory_record(run_cli: Cli, tmp_path: Path) -> None:
    record = json.loads(DEMO_INVENTORY.read_text().splitlines()[0])
    record["location"]["type"] = "continent"
    inventory = tmp_path / "inv.jsonl"
    inventory.write_text(DEMO_INVENTORY.read_text().splitlines()[1] + "\n" + json.dumps(record) + "\n")
    result, out = _check(run_cli, tmp_path, inventory=inventory)
    _assert_rejected(result, out, f"{inventory}:2", "location.type")


def test_missing_inventory(run_cli: Cli, tmp_path: Path) -> None:
    result, out = _check(run_cli, tmp_path, inventory=tmp_path / "nope.jsonl")
    _assert_rejected(result, out, "nope.jsonl", "cannot read inventory")


@pytest.mark.parametrize(
    ("param", "where", "what"),
    [
        pytest.param(
            "colour=red", "--param colour", "no loaded policy declares parameter 'colour'", id="unknown-param"
        ),
        pytest.param(
            "zone=atlantis", "--param zone=atlantis", "unknown zone 'atlantis'", id="unknown-zone-value"
        ),
        pytest.param("zone", "--param zone", "expected NAME=VALUE", id="no-equals"),
    ],
)
def test_bad_param(run_cli: Cli, tmp_path: Path, param: str, where: str, what: str) -> None:
    result, out = _check(run_cli, tmp_path, "--param", param)
    _assert_rejected(result, out, where, what)


def test_policy_validate_reports_the_same_errors(run_cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "custom.yaml"
    policy.write_text(GOOD_POLICY.replace("tags.owner", "location.continent"))
    result = run_cli("policy", "validate", policy)
    assert result.exit_code == 2 and f"{policy}:7" in result.stderr
    policy.write_text(GOOD_POLICY)
    assert run_cli("policy", "validate", policy).exit_code == 0


# --- hostile YAML: alias bombs, recursion, size ---------------------------------------------------

BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


@pytest.mark.parametrize("option", ["--policies", "--waivers"])
def test_alias_bomb_is_refused_at_once(run_cli: Cli, tmp_path: Path, option: str) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    started = time.monotonic()
    result, out = _check(run_cli, tmp_path, option, bomb)
    assert time.monotonic() - started < 10
    # e expands to 9^5 = 59,049 nodes, f pushes the aliases' total past 100,000
    _assert_rejected(result, out, f"{bomb}:6", "aliases expand the document by more than 100,000 nodes")


def test_merge_bomb_is_refused_at_once(run_cli: Cli, tmp_path: Path) -> None:
    levels = ["a0: &a0 {" + ", ".join(f"k{i}: {i}" for i in range(10)) + "}"]
    levels += [f"a{n}: &a{n} {{<<: [*a{n - 1}, *a{n - 1}]}}" for n in range(1, 40)]
    bomb = tmp_path / "merge.yaml"
    bomb.write_text("\n".join(levels) + "\n")
    started = time.monotonic()
    result = run_cli("policy", "validate", bomb)
    assert time.monotonic() - started < 10
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"{bomb}:" in result.stderr and "aliases expand" in result.stderr


def test_recursive_alias_is_refused(run_cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "loop.yaml"
    policy.write_text("policies:\n  - &p\n    id: x\n    nested: *p\n")
    result, out = _check(run_cli, tmp_path, "--policies", policy)
    _assert_rejected(result, out, f"{policy}:4", "an alias refers to a node that contains it")


def test_anchors_and_merge_keys_within_the_limit_still_work(run_cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "custom.yaml"
    policy.write_text(
        "base: &base\n  severity: low\n  description: Has an owner tag.\n"
        "policies:\n  - <<: *base\n    id: custom.tagged\n    title: Tagged\n"
        "    condition: {attribute: tags.owner, op: exists}\n"
    )
    result = run_cli("policy", "validate", policy)
    # the loader accepts the anchors; the policy schema then names the unknown top-level key
    assert result.exit_code == 2 and f"{policy}:1" in result.stderr and "base" in result.stderr
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(
        "waivers:\n  - &w\n    id: W-1\n    policy: transport.*\n    resources: {names: [exports]}\n"
        "    justification: legacy\n    approver: ciso@example.com\n    expires: 2027-01-31\n"
        "  - <<: *w\n    id: W-2\n"
    )
    result, out = _check(run_cli, tmp_path, "--waivers", waivers)
    assert result.exit_code in (0, 1, 3), result.stderr
    assert {w["id"] for w in json.loads(out.read_text())["run"]["waivers"]["entries"]} >= {"W-1", "W-2"}


def test_deep_nesting_is_refused(run_cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "deep.yaml"
    policy.write_text("policies: " + "[" * 500 + "]" * 500 + "\n")
    result, out = _check(run_cli, tmp_path, "--policies", policy)
    _assert_rejected(result, out, f"{policy}:1", "nested deeper than 200 levels")


def test_oversized_yaml_is_refused_without_reading_it(run_cli: Cli, tmp_path: Path) -> None:
    waivers = tmp_path / "big.yaml"
    waivers.write_text(WAIVER)
    os.truncate(waivers, 16 * 1024 * 1024 + 1)  # sparse: costs no disk, would cost memory
    result, out = _check(run_cli, tmp_path, "--waivers", waivers)
    _assert_rejected(result, out, str(waivers), "larger than 16 MiB")


def test_control_characters_in_an_error_are_shown_not_obeyed(run_cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "custom.yaml"
    hostile = "\\e[2J\\e]0;owned\\a\\u202eevil\\rkey"  # YAML escapes: ESC, BEL, RLO, CR
    policy.write_text(GOOD_POLICY + f'    "{hostile}": 1\n' + f'    "{hostile}": 2\n')
    result, out = _check(run_cli, tmp_path, "--policies", policy)
    _assert_rejected(result, out, f"{policy}:10", "duplicate key")
    assert "<U+001B>[2J<U+001B>]0;owned<U+0007><U+202E>evil<U+000D>key" in result.stderr
    assert not any(c in result.stderr for c in "\x1b\x07\u202e\r")
    raw = tmp_path / "raw.yaml"
    raw.write_text(GOOD_POLICY + "    note: \x1b[2J\n")  # a raw control character is not YAML
    result, out = _check(run_cli, tmp_path, "--policies", raw)
    _assert_rejected(result, out, f"{raw}:9", "control characters are not allowed")


# --- special files: FIFOs, devices, directories, symlink loops, endless lines ---------------------


def _subprocess(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A real process, so a regression that blocks (a FIFO) ends in a timeout, not a hung test run."""
    return subprocess.run(
        [sys.executable, "-m", "auditor.cli", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )


def _assert_one_line(returncode: int, stderr: str, where: str, what: str) -> None:
    assert returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert where in lines[0] and what in lines[0], lines[0]


def test_fifo_inventory_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "inv.jsonl"
    os.mkfifo(fifo)
    out = tmp_path / "out" / "findings.json"
    out.parent.mkdir()
    started = time.monotonic()
    done = _subprocess("check", "--inventory", fifo, "--format", "json", "-o", out)
    assert time.monotonic() - started < 30
    _assert_one_line(done.returncode, done.stderr, str(fifo), "named pipe (FIFO)")
    assert not list(out.parent.iterdir())


def test_fifo_findings_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "findings.json"
    os.mkfifo(fifo)
    done = _subprocess("report", "--findings", fifo, "--format", "html", "-o", tmp_path / "r.html")
    _assert_one_line(done.returncode, done.stderr, str(fifo), "named pipe (FIFO)")
    assert not (tmp_path / "r.html").exists()


def test_device_inventory_is_refused(run_cli: Cli, tmp_path: Path) -> None:
    result, out = _check(run_cli, tmp_path, inventory=Path("/dev/zero"))
    _assert_rejected(result, out, "/dev/zero", "character device")


def test_symlink_loop_inventory_is_one_line(run_cli: Cli, tmp_path: Path) -> None:
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(tmp_path / "loop.jsonl")
    result, out = _check(run_cli, tmp_path, inventory=loop)
    _assert_rejected(result, out, str(loop), "symlink loop")


def test_symlink_loop_baseline_is_one_line(tmp_path: Path) -> None:
    loop = tmp_path / "a.yaml"
    loop.symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(loop)
    out = tmp_path / "out"
    done = _subprocess("audit", "--demo", "--output-dir", out, "--baseline", loop, timeout=120)
    _assert_one_line(done.returncode, done.stderr, str(loop), "")
    assert not out.exists() or not list(out.iterdir())


def test_endless_inventory_line_is_refused_in_bounded_memory(run_cli: Cli, tmp_path: Path) -> None:
    inventory = tmp_path / "inv.jsonl"
    inventory.write_text(DEMO_INVENTORY.read_text().splitlines()[0] + "\n")
    with inventory.open("ab") as handle:
        handle.truncate(handle.tell() + 64 * 1024 * 1024 + 10)  # a sparse run of NULs, no newline
    result, out = _check(run_cli, tmp_path, inventory=inventory)
    _assert_rejected(result, out, f"{inventory}:2", "line longer than 64 MiB")


@pytest.mark.parametrize("option", ["--findings", "--previous", "--inventory"])
@pytest.mark.parametrize("kind", ["directory", "device", "loop"])
def test_report_inputs_that_are_not_files(
    run_cli: Cli, tmp_path: Path, demo_findings: Path, option: str, kind: str
) -> None:
    target = {"directory": tmp_path / "dir", "device": Path("/dev/zero"), "loop": tmp_path / "loop"}[kind]
    if kind == "directory":
        target.mkdir()
    elif kind == "loop":
        target.symlink_to(target)
    what = {"directory": "is a directory", "device": "character device", "loop": "symlink loop"}[kind]
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    args = ["--findings", demo_findings, "--format", "html", "-o", out]
    args = [*args, option, target] if option != "--findings" else [*args[2:], "--findings", target]
    result = run_cli("report", *args)
    _assert_rejected(result, out, str(target), what)


@pytest.mark.parametrize("kind", ["device", "oversized", "not-pem"])
def test_bad_public_key_file_is_one_line(run_cli: Cli, tmp_path: Path, kind: str) -> None:
    key = tmp_path / "key.pub"
    if kind == "device":
        key = Path("/dev/zero")
    elif kind == "oversized":
        key.write_text("-----BEGIN PUBLIC KEY-----\n")
        os.truncate(key, 64 * 1024 + 1)
    else:
        key.write_text("hello\n")
    what = {"device": "character device", "oversized": "larger than", "not-pem": "not a PEM public key"}[kind]
    result = run_cli("verify", tmp_path, "--public-key", key)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(key) in lines[0] and what in lines[0], result.stderr


# --- inventory duplicate keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        pytest.param(lambda line: line[:-1] + ', "name": "other"}', "name", id="top-level"),
        pytest.param(
            lambda line: line.replace('"tags": {', '"tags": {"owner": "a", "owner": "b", ', 1),
            "owner",
            id="nested",
        ),
        pytest.param(lambda line: line[:-1] + ', "na\\u006de": "other"}', "name", id="escaped-key"),
    ],
)
def test_duplicate_key_in_inventory_line(
    run_cli: Cli, tmp_path: Path, edit: Callable[[str], str], key: str
) -> None:
    lines = DEMO_INVENTORY.read_text().splitlines()
    tagged = next(line for line in lines if '"tags": {"' in line or '"tags":{"' in line)
    tagged = json.dumps(json.loads(tagged))  # one known spacing for the edits
    inventory = tmp_path / "inv.jsonl"
    inventory.write_text(lines[1] + "\n" + edit(tagged) + "\n")
    result, out = _check(run_cli, tmp_path, inventory=inventory)
    _assert_rejected(result, out, f"{inventory}:2", f'duplicate key "{key}"')


def test_colon_escapes_without_duplicates_are_accepted(run_cli: Cli, tmp_path: Path) -> None:
    """The slow path (a colon written as an escape) must not reject a valid line."""
    record = json.loads(DEMO_INVENTORY.read_text().splitlines()[0])
    line = json.dumps(record).replace('"tags": {', '"tags": {"note\\u003a": "a\\u003Ab", ', 1)
    assert "\\u003a" in line
    inventory = tmp_path / "inv.jsonl"
    inventory.write_text(line + "\n")
    result, out = _check(run_cli, tmp_path, inventory=inventory)
    assert result.exit_code in (0, 1, 3), result.stderr
    assert out.exists()
