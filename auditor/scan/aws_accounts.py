"""Which AWS accounts an `auditor scan aws` run covers, and one boto3 session per account.

Accounts come from profiles (each scanned with its own credentials) or from a role assumed into
every account of a file or of the AWS Organization. An account whose credentials cannot be had
becomes a `CoverageGap`; the others go on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from auditor.errors import InputError
from auditor.model import CoverageGap, Unknown, UnknownCode
from auditor.scan.base import CallCounter

SessionHook = Callable[[boto3.Session], None]
ACCOUNT_ID = re.compile(r"^\d{12}$")
ROLE_SESSION_NAME = "auditor-scan"

_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AllAccessDisabled",
        "AuthorizationError",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "AWSOrganizationsNotInUseException",
    }
)
_THROTTLED_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "BandwidthLimitExceeded",
        "PriorRequestNotComplete",
    }
)


def classify_error(error: Exception, operation: str) -> Unknown:
    """Map a failed AWS call to an `Unknown`: denied, throttled (retries spent), timeout or error."""
    # Imported here: botocore's timeout classes are the only BotoCoreErrors with their own code.
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code") or "Unknown")
        message = str(details.get("Message") or "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _DENIED_CODES or status == 403:
            kind = UnknownCode.ACCESS_DENIED
        elif code in _THROTTLED_CODES or status in (429, 503):
            kind = UnknownCode.THROTTLED
        else:
            kind = UnknownCode.ERROR
        return Unknown(code=kind, reason=f"{code}: {message} ({operation})")
    if isinstance(error, ConnectTimeoutError | ReadTimeoutError):
        return Unknown(code=UnknownCode.TIMEOUT, reason=f"{type(error).__name__}: {error} ({operation})")
    return Unknown(code=UnknownCode.ERROR, reason=f"{type(error).__name__}: {error} ({operation})")


def client_config(
    concurrency: int, retry_mode: str, max_attempts: int, connect_timeout: float, read_timeout: float
) -> Config:
    """The botocore settings of every client: retries, timeouts and a pool sized to the workers."""
    return Config(
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max(10, concurrency),
        user_agent_extra="auditor-scan",
    )


@dataclass(frozen=True)
class AccountSource:
    """What the user asked to scan: profiles, or a role assumed into listed/organization accounts."""

    profiles: tuple[str, ...] = ()
    role: str | None = None
    accounts: tuple[str, ...] = ()
    organization: bool = False

    def __post_init__(self) -> None:
        if self.organization and self.accounts:
            raise InputError("--organization", "give either --accounts or --organization, not both")
        if (self.organization or self.accounts) and not self.role:
            raise InputError("--role-arn", "--accounts and --organization need --role-arn")
        if self.role and len(self.profiles) > 1:
            raise InputError(
                "--profile", "with --role-arn, give at most one --profile (the one that assumes)"
            )
        several = self.organization or bool(self.accounts)
        if self.role and not several and (not self.role.startswith("arn:") or "{account_id}" in self.role):
            raise InputError(
                "--role-arn", "a role name or '{account_id}' template needs --accounts or --organization"
            )
        if self.role and several and self.role.startswith("arn:") and "{account_id}" not in self.role:
            raise InputError("--role-arn", "a role ARN used for several accounts needs '{account_id}'")


def read_accounts_file(path: Path) -> tuple[str, ...]:
    """Account ids from a file: one per line, '#' starts a comment, blank lines ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(str(path), f"cannot read accounts file: {exc.strerror or exc}") from exc
    ids: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        if not ACCOUNT_ID.match(value):
            raise InputError(f"{path}:{number}", f"'{value}' is not a 12-digit AWS account id")
        if value not in ids:
            ids.append(value)
    if not ids:
        raise InputError(str(path), "no account ids in the file")
    return tuple(ids)


def role_arn_for(role: str, account_id: str, partition: str) -> str:
    """The role ARN to assume in `account_id`: a template with '{account_id}', or a role name."""
    if role.startswith("arn:"):
        return role.replace("{account_id}", account_id)
    return f"arn:{partition}:iam::{account_id}:role/{role}"


def partition_of(arn: str) -> str:
    """The partition of an ARN ('aws', 'aws-cn', 'aws-us-gov', ...)."""
    parts = arn.split(":")
    return parts[1] if len(parts) > 2 and parts[1] else "aws"


@dataclass
class AccountSession:
    """One account to scan: its credentials, and the identity STS gave for them."""

    label: str
    session: boto3.Session
    account_id: str = ""
    partition: str = "aws"
    caller_arn: str = ""


@dataclass
class AccountResolver:
    """Turns an `AccountSource` into account sessions (or coverage gaps), one at a time."""

    source: AccountSource
    config: Config
    calls: CallCounter
    session_hook: SessionHook | None = None
    default_region: str = "us-east-1"
    _base: boto3.Session | None = field(default=None, init=False)

    def _session(self, **kwargs: Any) -> boto3.Session:
        session = boto3.Session(**kwargs)
        if self.session_hook is not None:
            self.session_hook(session)
        return session

    def region_of(self, session: boto3.Session) -> str:
        """The session's configured region, or the resolver's default."""
        return str(session.region_name or self.default_region)

    def _identify(self, label: str, session: boto3.Session) -> AccountSession | CoverageGap:
        sts = session.client("sts", region_name=self.region_of(session), config=self.config)
        self.calls.add("sts:GetCallerIdentity")
        try:
            identity = sts.get_caller_identity()
        except (ClientError, BotoCoreError) as exc:
            return self._gap(label, exc, "sts:GetCallerIdentity")
        arn = str(identity["Arn"])
        return AccountSession(label, session, str(identity["Account"]), partition_of(arn), arn)

    def _gap(self, account: str, error: Exception, operation: str, scope: str = "account") -> CoverageGap:
        unknown = classify_error(error, operation)
        return CoverageGap(
            provider="aws", account=account, scope=scope, code=unknown.code, reason=unknown.reason, at=_now()
        )

    def _base_session(self) -> AccountSession | CoverageGap:
        """The session that assumes the role: the one --profile (or the default chain), identified."""
        profile = self.source.profiles[0] if self.source.profiles else None
        try:
            base_session = self._session(profile_name=profile) if profile else self._session()
        except BotoCoreError as exc:
            return self._gap(profile or "default", exc, "boto3.Session")
        return self._identify(profile or "default", base_session)

    def organization_account_ids(self) -> Iterator[str | CoverageGap]:
        """The ACTIVE accounts of the organization (or a gap), listed with the base credentials.

        Used to plan one unit of work per account (auditor.scale) without assuming any role.
        """
        base = self._base_session()
        if isinstance(base, CoverageGap):
            yield base
            return
        yield from self._organization_accounts(base)

    def sessions(self) -> Iterator[AccountSession | CoverageGap]:
        """Every account to scan, identified, or a gap saying why it cannot be."""
        if not self.source.role:
            for profile in self.source.profiles or (None,):
                label = profile or "default"
                try:
                    session = self._session(profile_name=profile) if profile else self._session()
                except BotoCoreError as exc:
                    yield self._gap(label, exc, "boto3.Session")
                    continue
                yield self._identify(label, session)
            return
        base = self._base_session()
        if isinstance(base, CoverageGap):
            yield base
            return
        if self.source.organization:
            accounts = self._organization_accounts(base)
        elif self.source.accounts:
            accounts = iter(self.source.accounts)
        else:
            accounts = iter((_account_of_role(self.source.role) or base.account_id,))  # one full role ARN
        for account_id in accounts:
            if isinstance(account_id, CoverageGap):
                yield account_id
                continue
            if account_id == base.account_id and not self.source.role.startswith("arn:"):
                # The assuming account itself (e.g. an organization's management account, which has
                # no OrganizationAccountAccessRole): scanned with the base credentials.
                yield base
                continue
            yield self._assume(base, account_id)

    def _organization_accounts(self, base: AccountSession) -> Iterator[str | CoverageGap]:
        client = base.session.client(
            "organizations", region_name=self.region_of(base.session), config=self.config
        )
        token: str | None = None
        while True:
            self.calls.add("organizations:ListAccounts")
            try:
                page = client.list_accounts(**({"NextToken": token} if token else {}))
            except (ClientError, BotoCoreError) as exc:
                yield self._gap(base.account_id, exc, "organizations:ListAccounts", scope="organization")
                return
            for account in page.get("Accounts", []):
                # `Status` is being replaced by `State`; either says ACTIVE for a live account.
                state = account.get("State") or account.get("Status")
                if state == "ACTIVE":
                    yield str(account["Id"])
            token = page.get("NextToken")
            if not token:
                return

    def _assume(self, base: AccountSession, account_id: str) -> AccountSession | CoverageGap:
        assert self.source.role is not None
        role_arn = role_arn_for(self.source.role, account_id, base.partition)
        sts = base.session.client("sts", region_name=self.region_of(base.session), config=self.config)
        self.calls.add("sts:AssumeRole")
        try:
            answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=ROLE_SESSION_NAME)
        except (ClientError, BotoCoreError) as exc:
            return self._gap(account_id, exc, f"sts:AssumeRole {role_arn}")
        credentials = answer["Credentials"]
        session = self._session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=base.session.region_name,
        )
        return self._identify(account_id, session)


def _account_of_role(role: str | None) -> str | None:
    if role and role.startswith("arn:"):
        parts = role.split(":")
        if len(parts) > 4 and ACCOUNT_ID.match(parts[4]):
            return parts[4]
    return None


def _now() -> datetime:
    return datetime.now(UTC)
