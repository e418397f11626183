"""What an S3 bucket policy says about transport: does it refuse plaintext, and what TLS floor it sets.

A statement refuses plaintext only if it is a ``Deny`` that covers every principal, every S3 action
and the whole bucket and all its objects, conditioned on nothing but ``aws:SecureTransport`` being
false (``Bool`` or ``BoolIfExists``). Anything narrower leaves a way in over HTTP:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html#transit
An ``Allow`` conditioned on ``aws:SecureTransport`` true refuses nothing (another grant may allow
HTTP). A ``Deny`` on ``s3:TlsVersion`` below 1.2 raises the TLS floor but does not refuse plaintext:
the key is absent on HTTP requests, so the condition is false (unless ``...IfExists``).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from auditor.model import with_partial
from auditor.versions import parse_version

if TYPE_CHECKING:
    from auditor.model import StorageResource, Unknown

_ALL_ACTIONS = {"*", "s3:*"}
# Each TLS version with its comparable form.
_TLS_VERSIONS: tuple[tuple[str, tuple[int, ...]], ...] = tuple(
    (version, parsed)
    for version in ("1.0", "1.1", "1.2", "1.3")
    if (parsed := parse_version(version)) is not None
)


class BucketPolicyVerdict(NamedTuple):
    """The transport facts one bucket policy establishes."""

    plaintext_refused: bool
    plaintext_refused_by: str | None
    tls_floor: str | None
    tls_floor_by: str | None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _statement_label(statement: dict[str, Any], index: int) -> str:
    sid = statement.get("Sid")
    return f"bucket-policy:Sid={sid}" if sid else f"bucket-policy:Statement[{index}]"


def _covers_every_principal(statement: dict[str, Any]) -> bool:
    if "NotPrincipal" in statement:
        return False  # a Deny with NotPrincipal exempts the principals it names
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return "*" in _as_list(principal.get("AWS"))
    return False


def _covers_every_action(statement: dict[str, Any]) -> bool:
    if "NotAction" in statement:
        return False
    return any(str(action).lower() in _ALL_ACTIONS for action in _as_list(statement.get("Action")))


@lru_cache(maxsize=4096)
def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


def _covers_bucket_and_objects(statement: dict[str, Any], bucket_arn: str) -> bool:
    if "NotResource" in statement:
        return False
    patterns = [str(p) for p in _as_list(statement.get("Resource"))]
    covers_bucket = any(_matches(p, bucket_arn) for p in patterns)
    # Every object: some pattern ends in '*' and its head matches a prefix of "<arn>/" (re.match
    # anchors only at the start), so the trailing '*' absorbs any key. ".../logs/*" does not qualify.
    objects_root = bucket_arn + "/"
    covers_objects = any(p.endswith("*") and _matches(p[:-1], objects_root, prefix=True) for p in patterns)
    return covers_bucket and covers_objects


def _matches(pattern: str, text: str, *, prefix: bool = False) -> bool:
    """Whether the ARN wildcard `pattern` matches all of `text` (`prefix`: a prefix of it)."""
    if "*" not in pattern and "?" not in pattern:  # most patterns name the ARN: no regex needed
        return text.startswith(pattern) if prefix else text == pattern
    regex = _wildcard_regex(pattern)
    return bool(regex.match(text) if prefix else regex.fullmatch(text))


def _is_false(value: Any) -> bool:
    values = _as_list(value)
    return bool(values) and all(str(v).lower() == "false" for v in values)


def _conditions(statement: dict[str, Any]) -> list[tuple[str, str, Any]]:
    condition = statement.get("Condition") or {}
    if not isinstance(condition, dict):  # not a condition block S3 accepts: it is never understood
        return [("", "", condition)]
    flat: list[tuple[str, str, Any]] = []
    for operator, block in condition.items():
        if not isinstance(block, dict):
            flat.append((operator, "", block))
            continue
        for key, value in block.items():
            flat.append((operator, key.lower(), value))
    return flat


def _denies_plaintext(conditions: list[tuple[str, str, Any]]) -> bool:
    if len(conditions) != 1:
        return False  # no condition denies everything over any transport; extra ones narrow it
    operator, key, value = conditions[0]
    if key == "aws:securetransport":
        return operator in ("Bool", "BoolIfExists") and _is_false(value)
    # NumericLessThanIfExists on s3:TlsVersion is true when the key is absent, i.e. on HTTP.
    return key == "s3:tlsversion" and operator in ("NumericLessThanIfExists", "NumericLessThanEqualsIfExists")


def _tls_floor(conditions: list[tuple[str, str, Any]]) -> str | None:
    if len(conditions) != 1:
        return None
    operator, key, value = conditions[0]
    if key != "s3:tlsversion":
        return None
    bounds = [parse_version(str(v)) for v in _as_list(value)]
    if not bounds or any(b is None for b in bounds):
        return None
    bound = min(b for b in bounds if b is not None)
    for version, parsed in _TLS_VERSIONS:
        if operator.startswith("NumericLessThanEquals"):
            if parsed > bound:
                return version
        elif operator.startswith("NumericLessThan") and parsed >= bound:
            return version
    return None


def analyse_bucket_policy(policy: dict[str, Any] | str | None, bucket_arn: str) -> BucketPolicyVerdict:
    """Decide which statement (if any) refuses plaintext and which sets a TLS floor."""
    document: dict[str, Any] = json.loads(policy) if isinstance(policy, str) else (policy or {})
    refused_by: str | None = None
    floor: str | None = None
    floor_by: str | None = None
    statements = _as_list(document.get("Statement"))
    for index, statement in enumerate(statements):
        if not isinstance(statement, dict) or statement.get("Effect") != "Deny":
            continue
        if not (
            _covers_every_principal(statement)
            and _covers_every_action(statement)
            and _covers_bucket_and_objects(statement, bucket_arn)
        ):
            continue
        conditions = _conditions(statement)
        if refused_by is None and _denies_plaintext(conditions):
            refused_by = _statement_label(statement, index)
        statement_floor = _tls_floor(conditions)
        if statement_floor is not None and (floor is None or statement_floor > floor):
            floor, floor_by = statement_floor, _statement_label(statement, index)
    return BucketPolicyVerdict(refused_by is not None, refused_by, floor, floor_by)


def bucket_arn_of(resource: StorageResource) -> str:
    """The bucket ARN of an S3 resource (its id when that is an ARN, else built from its name)."""
    return resource.id if resource.id.startswith("arn:") else f"arn:aws:s3:::{resource.name}"


def apply_bucket_policy(resource: StorageResource) -> None:
    """Derive an S3 resource's transport fields from its raw bucket policy, in place.

    Applies only when ``transport.bucket_policy`` was given (null means "no bucket policy"); a
    bucket policy that could not be read makes the verdict unknown with the same reason. The TLS
    minimum is then partly known: the provider floor is enforced on every endpoint whatever the
    policy says, and the unreadable policy may raise it, so ``min_tls_version`` is the floor
    recorded as a lower bound (``Unknown.partial = "at_least"``) and what enforces the minimum is
    unknown. Without a provider floor nothing bounds it: it is wholly unknown.
    """
    transport = resource.transport
    if transport is None or "bucket_policy" not in transport.model_fields_set:
        return
    policy_unknown = resource.unknown.get("transport.bucket_policy") or resource.unknown.get("transport")
    if policy_unknown is not None:
        if policy_unknown.partial is not None:  # a policy document carries no partial knowledge
            policy_unknown = with_partial(policy_unknown, None)
        resource.unknown.setdefault("transport.plaintext_refused", policy_unknown)
        resource.unknown.setdefault("transport.plaintext_refused_by", policy_unknown)
        if "transport" not in resource.unknown:  # a whole unknown group already covers its leaves
            _tls_minimum_unknown(resource, policy_unknown)
        return
    verdict = analyse_bucket_policy(transport.bucket_policy, bucket_arn_of(resource))
    transport.plaintext_refused = verdict.plaintext_refused
    transport.plaintext_refused_by = verdict.plaintext_refused_by
    if verdict.tls_floor is not None:
        provider = transport.provider_floor
        provider_version = parse_version(provider.version) if provider else None
        policy_version = parse_version(verdict.tls_floor)
        if provider_version is None or (policy_version is not None and policy_version > provider_version):
            transport.min_tls_version = verdict.tls_floor
            transport.min_tls_enforced_by = verdict.tls_floor_by


def _tls_minimum_unknown(resource: StorageResource, policy_unknown: Unknown) -> None:
    """The TLS minimum of a bucket whose policy is unreadable: the provider floor, as a lower bound."""
    transport = resource.transport
    assert transport is not None
    floor = transport.provider_floor
    if floor is not None and parse_version(floor.version) is not None:
        transport.min_tls_version = floor.version
        transport.min_tls_enforced_by = "provider-floor"
        bound = with_partial(policy_unknown, "at_least")
        resource.unknown.setdefault("transport.min_tls_version", bound)
    else:
        resource.unknown.setdefault("transport.min_tls_version", policy_unknown)
    resource.unknown.setdefault("transport.min_tls_enforced_by", policy_unknown)
