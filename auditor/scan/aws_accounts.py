"""Which AWS accounts an `auditor scan aws` run covers, and one boto3 session per account.

Accounts come from profiles (each scanned with its own credentials) or from a role assumed into
every account of a file or of the AWS Organization. An account whose credentials cannot be had
becomes a `CoverageGap`; the others go on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from auditor.errors import InputError
from auditor.model import CoverageGap, Evidence
from auditor.scan.aws_calls import classify_error as classify_error
from auditor.scan.aws_calls import client_config as client_config
from auditor.scan.aws_calls import instrument, recorder, request
from auditor.scan.base import CallCounter
from auditor.scan.calls import Answer, now

SessionHook = Callable[[boto3.Session], None]
ACCOUNT_ID = re.compile(r"^\d{12}$")
ROLE_SESSION_NAME = "auditor-scan"


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

    def _call(
        self, session: boto3.Session, service: str, operation: str, **params: Any
    ) -> Answer[dict[str, Any]]:
        client = instrument(session.client(service, region_name=self.region_of(session), config=self.config))
        return recorder(self.calls).call(
            f"{service}:{operation}", [], params, lambda: request(client, operation, params)
        )

    def _identify(self, label: str, session: boto3.Session) -> AccountSession | CoverageGap:
        """The session's account (sts:GetCallerIdentity), or a gap named `label`."""
        answer = self._call(session, "sts", "GetCallerIdentity")
        identity = answer.value
        if identity is None:
            return self._gap(label, answer.error, "sts:GetCallerIdentity", evidence=answer.evidence)
        arn = str(identity["Arn"])
        return AccountSession(label, session, str(identity["Account"]), partition_of(arn), arn)

    def _gap(
        self,
        account: str,
        error: Exception | None,
        operation: str,
        scope: str = "account",
        context: str = "",
        evidence: Evidence | None = None,
    ) -> CoverageGap:
        """A gap for `account`; `evidence` is the failed call's (none when no call was made)."""
        unknown = classify_error(error or RuntimeError("no answer"), operation)
        return CoverageGap(
            provider="aws",
            account=account,
            scope=scope,
            code=unknown.code,
            reason=f"{context}{unknown.reason}",
            at=now(),
            evidence=[evidence] if evidence is not None else [],
        )

    def _profile(self) -> str | None:
        return self.source.profiles[0] if self.source.profiles else None

    def _base_session(self) -> AccountSession | CoverageGap:
        """The session that assumes the role: the one --profile (or the default chain), identified.

        A gap names the profile (``profile:NAME``, ``profile:default`` for the default chain):
        no account id is known before GetCallerIdentity answers.
        """
        profile = self._profile()
        label = profile_label(profile)
        try:
            base_session = self._session(profile_name=profile) if profile else self._session()
        except BotoCoreError as exc:
            return self._gap(label, exc, "boto3.Session")
        return self._identify(label, base_session)

    def organization_account_ids(self) -> Iterator[str | CoverageGap]:
        """The ACTIVE accounts of the organization (or a gap), listed with the base credentials.

        Used to plan one unit of work per account (auditor.scale) without assuming any role.
        """
        base = self._base_session()
        if isinstance(base, CoverageGap):
            yield base.model_copy(update={"scope": "organization"})
            return
        yield from self._organization_accounts(base)

    def sessions(self) -> Iterator[AccountSession | CoverageGap]:
        """Every account to scan, identified, or a gap saying why it cannot be.

        Gaps name the account id whenever it can be known (the --accounts file, the role ARN,
        the organization listing); otherwise the profile, as ``profile:NAME``.
        """
        if not self.source.role:
            for profile in self.source.profiles or (None,):
                label = profile_label(profile)
                try:
                    session = self._session(profile_name=profile) if profile else self._session()
                except BotoCoreError as exc:
                    yield self._gap(label, exc, "boto3.Session")
                    continue
                yield self._identify(label, session)
            return
        base = self._base_session()
        if isinstance(base, CoverageGap):
            yield from self._base_gaps(base)
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

    def _base_gaps(self, base: CoverageGap) -> Iterator[CoverageGap]:
        """The base credentials failed: a gap per account they were to reach, when those are known."""
        known = self.source.accounts or tuple(filter(None, (_account_of_role(self.source.role),)))
        if not known:  # --organization: the accounts themselves cannot be listed
            yield base.model_copy(update={"scope": "organization"})
            return
        context = f"base credentials {base.account}: "
        for account_id in known:
            yield base.model_copy(update={"account": account_id, "reason": f"{context}{base.reason}"})

    def _organization_accounts(self, base: AccountSession) -> Iterator[str | CoverageGap]:
        token: str | None = None
        while True:
            answer = self._call(base.session, "organizations", "ListAccounts", **_token(token))
            page = answer.value
            if page is None:
                yield self._gap(
                    base.account_id,
                    answer.error,
                    "organizations:ListAccounts",
                    scope="organization",
                    evidence=answer.evidence,
                )
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
        answer = self._call(
            base.session, "sts", "AssumeRole", RoleArn=role_arn, RoleSessionName=ROLE_SESSION_NAME
        )
        if answer.value is None:
            return self._gap(account_id, answer.error, f"sts:AssumeRole {role_arn}", evidence=answer.evidence)
        credentials = answer.value["Credentials"]
        session = self._session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=base.session.region_name,
        )
        return self._identify(account_id, session)


def profile_label(profile: str | None) -> str:
    """How a gap names credentials whose account id is not known: ``profile:NAME``.

    ``profile:default`` is the standard boto3 credential chain (environment, default profile,
    instance role) used when no --profile is given.
    """
    return f"profile:{profile or 'default'}"


def _token(token: str | None) -> dict[str, str]:
    return {"NextToken": token} if token else {}


def _account_of_role(role: str | None) -> str | None:
    if role and role.startswith("arn:"):
        parts = role.split(":")
        if len(parts) > 4 and ACCOUNT_ID.match(parts[4]):
            return parts[4]
    return None
