"""Bedrock and the AWS AI services opt-out policy: the AI resources `auditor scan aws` inventories.

Per account, in each enabled region (`ec2:DescribeRegions`, narrowed by `--regions`):

* every application inference profile (`bedrock:ListInferenceProfiles`) -> `ai-inference-profile`,
  processed in the regions of its models' ARNs (never read from its name);
* every agent (`bedrock-agent:ListAgents`, `GetAgent`) -> `ai-agent`, processed where its foundation
  model runs: the agent's region for a model id, the ARN's region for a model ARN, the profile's
  models' regions for a system or application inference profile (`bedrock:GetInferenceProfile`);
* model invocation logging (`bedrock:GetModelInvocationLoggingConfiguration`) -> one
  `ai-invocation-log` where configured: where prompts and completions are stored at rest;

and once per account the effective AI services opt-out policy (`organizations:DescribeEffectivePolicy`)
-> `ai-settings`. Only kinds a loaded policy is scoped to are listed, and within a kind only the
calls feeding what such a policy reads are made. See docs/scanners/aws-bedrock.md.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from botocore.exceptions import ClientError

from auditor.inventory import InventoryRecord
from auditor.model import (
    ANY_REGION,
    CoverageGap,
    Evidence,
    Location,
    Processing,
    ProcessingScope,
    StorageResource,
    Training,
    Unknown,
    UnknownCode,
)
from auditor.scan.aws_calls import AccountClients, Answer, Memo, bounded, now
from auditor.scan.aws_source import BEDROCK_REGIONAL
from auditor.scan.base import AttributeNeeds

# Every AI kind the AWS source writes.
AWS_AI_KINDS: tuple[str, ...] = (*BEDROCK_REGIONAL, "ai-settings")
PAGE_SIZE = 1000  # the largest maxResults Bedrock and Bedrock Agents accept
OPT_OUT_POLICY_TYPE = "AISERVICES_OPT_OUT_POLICY"

# --- documented provider behaviour, with its source and when it was last checked ------------------
CHECKED_ON = date(2026, 11, 29)
BEDROCK_DATA_PROTECTION = "https://docs.aws.amazon.com/bedrock/latest/userguide/data-protection.html"
AI_OPT_OUT_POLICIES = (
    "https://docs.aws.amazon.com/organizations/latest/userguide/orgs_manage_policies_ai-opt-out.html"
)
# "Only destinations from the same account and Region are supported."
INVOCATION_LOGGING = "https://docs.aws.amazon.com/bedrock/latest/userguide/model-invocation-logging.html"

BEDROCK_DOES_NOT_TRAIN = Training(
    provider_may_train=False,
    decided_by="provider-default",
    setting="Amazon Bedrock does not use prompts and completions to train AWS models, nor share them "
    "with third parties (model providers)",
    source=BEDROCK_DATA_PROTECTION,
    as_of=CHECKED_ON,
)

# An effective AI services opt-out policy shows each service's resolved `opt_out_policy` value
# (inheritance operators already applied): whether the provider may use the content.
OPT_OUT_VALUES: dict[str, bool] = {"optOut": False, "optIn": True}
# DescribeRegions' OptInStatus of a region not enabled for the account (it holds no resources).
NOT_ENABLED = frozenset({"not-opted-in"})

# How a model ARN an agent names is processed: in the ARN's own region, or as an inference profile
# resolved through GetInferenceProfile. Other resource types are not understood (unknown).
ArnRouting = Literal["arn-region", "profile"]
ARN_ROUTING: dict[str, ArnRouting] = {
    "foundation-model": "arn-region",
    "custom-model": "arn-region",
    "custom-model-deployment": "arn-region",
    "imported-model": "arn-region",
    "provisioned-model": "arn-region",
    "endpoint": "arn-region",  # a SageMaker (Bedrock Marketplace) endpoint
    "inference-profile": "profile",
    "application-inference-profile": "profile",
}
# The list each paged listing answers with.
LISTED: dict[str, str] = {
    "ListInferenceProfiles": "inferenceProfileSummaries",
    "ListAgents": "agentSummaries",
}
# The resource types an inference profile's `models[].modelArn` may name.
PROFILE_MODEL_TYPES = frozenset(kind for kind, routing in ARN_ROUTING.items() if routing == "arn-region")


@dataclass(frozen=True)
class Arn:
    """The parts of an ARN the scanner reads (`region` lower case, empty when the ARN has none)."""

    partition: str
    service: str
    region: str
    account: str
    resource_type: str
    resource_id: str


def parse_arn(value: object) -> Arn | None:
    """`value` as an ARN `arn:partition:service:region:account:type/id`, or None."""
    if not isinstance(value, str):
        return None
    parts = value.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    resource_type, _, resource_id = parts[5].partition("/")
    if not resource_type or not resource_id:
        return None
    return Arn(parts[1], parts[2], parts[3].lower(), parts[4], resource_type, resource_id)


def processing_scope(regions: list[str]) -> ProcessingScope:
    """`global` when any region may process, `region` for one, `geography` for several."""
    if ANY_REGION in regions:
        return "global"
    return "region" if len(regions) == 1 else "geography"


def profile_regions(models: object) -> tuple[list[str], str | None]:
    """The regions of an inference profile's `models` (an empty ARN region: any), or why not."""
    if not isinstance(models, list) or not models:
        return [], "the inference profile names no models"
    regions: set[str] = set()
    for model in models:
        raw = model.get("modelArn") if isinstance(model, dict) else None
        arn = parse_arn(raw)
        if arn is None or arn.resource_type not in PROFILE_MODEL_TYPES:
            return [], f"model ARN {bounded(repr(raw), 200)} not understood"
        regions.add(arn.region or ANY_REGION)
    return sorted(regions), None


def opt_out_training(content: object) -> tuple[Training | None, Unknown | None]:
    """The verdict of an effective AI services opt-out policy (its `PolicyContent`).

    Opted out (may not train) only when the default is optOut and no service opts in; a service
    that opts in may use content; without a default, the services the policy does not name follow
    the AWS default (may use content). Anything else is not understood: unknown.
    """
    problem: str | None = None
    services: object = None
    try:
        document = json.loads(content) if isinstance(content, str) else None
        services = document.get("services") if isinstance(document, dict) else None
    except ValueError as exc:
        problem = f"the effective policy is not JSON ({exc})"
    if problem is None and not isinstance(services, dict):
        problem = "the effective policy has no `services` object"
    values: dict[str, bool] = {}
    if problem is None and isinstance(services, dict):
        for service, entry in services.items():
            value = entry.get("opt_out_policy") if isinstance(entry, dict) else None
            if not isinstance(value, str) or value not in OPT_OUT_VALUES:
                problem = f"service '{service}': opt_out_policy {bounded(repr(value), 100)} not understood"
                break
            values[str(service)] = OPT_OUT_VALUES[value]
    if problem is not None:
        return None, Unknown(
            code=UnknownCode.ERROR, reason=f"{problem} (organizations:DescribeEffectivePolicy)"
        )
    setting = bounded(str(content), 2000)
    if any(values.values()):
        return Training(provider_may_train=True, decided_by="organization-policy", setting=setting), None
    if "default" not in values:
        why = f"{setting} has no `default` opt-out: the services it does not name follow the AWS default"
        return _aws_default(why), None
    return Training(provider_may_train=False, decided_by="organization-policy", setting=setting), None


def _aws_default(why: str) -> Training:
    return Training(
        provider_may_train=True,
        decided_by="provider-default",
        setting=f"AWS AI services may use content for service improvement unless opted out: {why}",
        source=AI_OPT_OUT_POLICIES,
        as_of=CHECKED_ON,
    )


# Where a model invocation logging configuration delivers: (section path, name key, how it is shown).
LOG_DESTINATIONS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("s3Config",), "bucketName", "s3://{name}/{prefix}"),
    (("cloudWatchConfig",), "logGroupName", "logs:{name}"),
    (("cloudWatchConfig", "largeDataDeliveryS3Config"), "bucketName", "s3://{name}/{prefix}"),
)


def logging_destinations(config: dict[str, Any]) -> tuple[list[str], str | None]:
    """Where a model invocation logging configuration stores prompts (`s3://...`, `logs:...`), or why not."""
    found: list[str] = []
    for path, key, form in LOG_DESTINATIONS:
        section: Any = config
        for step in path:
            section = section.get(step) if isinstance(section, dict) else None
        if section is None:
            continue
        name = section.get(key) if isinstance(section, dict) else None
        if not isinstance(name, str) or not name:
            return [], f"{'.'.join(path)} has no {key}"
        prefix = str(section.get("keyPrefix") or "")
        found.append(form.format(name=name, prefix=prefix).rstrip("/"))
    return found, None


def _members(problem: Unknown) -> Unknown:
    return Unknown(code=problem.code, reason=problem.reason, partial="members")


def _gap(account: str, scope: str, problem: Unknown, evidence: Evidence | None) -> CoverageGap:
    return CoverageGap(
        provider="aws",
        account=account,
        scope=scope,
        code=problem.code,
        reason=problem.reason,
        at=now(),
        evidence=[evidence] if evidence is not None else [],
    )


def _failure(answer: Answer[dict[str, Any]], call: str) -> Unknown:
    return answer.unknown or Unknown(code=UnknownCode.ERROR, reason=f"no answer ({call})")


def _prompt_configurations(agent: dict[str, Any]) -> list[dict[str, Any]]:
    override = agent.get("promptOverrideConfiguration")
    prompts = override.get("promptConfigurations") if isinstance(override, dict) else None
    return [p for p in prompts if isinstance(p, dict)] if isinstance(prompts, list) else []


def _agent_shown(answer: dict[str, Any]) -> dict[str, Any]:
    """What GetAgent's evidence keeps: the model fields, never the agent's instructions or prompts."""
    found = answer.get("agent")
    agent: dict[str, Any] = found if isinstance(found, dict) else {}
    kept: dict[str, Any] = {
        key: agent[key]
        for key in ("agentId", "agentName", "agentArn", "agentStatus", "foundationModel", "orchestrationType")
        if key in agent
    }
    prompts = _prompt_configurations(agent)
    if prompts:
        kept["promptConfigurations"] = [
            {key: p[key] for key in ("promptType", "foundationModel") if key in p} for p in prompts
        ]
    return {"agent": kept}


def agent_models(agent: dict[str, Any]) -> list[str]:
    """The models an agent invokes: its `foundationModel` and any prompt override's model."""
    models = [
        agent.get("foundationModel"),
        *(p.get("foundationModel") for p in _prompt_configurations(agent)),
    ]
    return list(dict.fromkeys(m for m in models if isinstance(m, str) and m))


@dataclass
class Resolved:
    """Where one model reference is processed: regions, or the problem; and the evidence read."""

    regions: list[str]
    problem: Unknown | None
    evidence: list[Evidence]


class BedrockScanner:
    """Lists the Bedrock resources and the AI opt-out verdict of each account `AwsScanner` scans."""

    def __init__(self, needs: AttributeNeeds, regions: frozenset[str] | None, concurrency: int) -> None:
        self.needs = needs
        self.regions = regions
        self.concurrency = concurrency

    @property
    def wanted(self) -> bool:
        """True if a loaded policy is scoped to an AI kind this source writes."""
        return any(self.needs.wants_kind(kind) for kind in AWS_AI_KINDS)

    def scan_account(
        self, account: AccountClients, emit: Callable[[InventoryRecord], None], stop: threading.Event
    ) -> None:
        """Emit every AI record of `account` (and a gap per listing that could not be read)."""
        scan = _AccountScan(self.needs, account)
        if self.needs.wants_kind("ai-settings"):
            emit(scan.settings())
        kinds = [kind for kind in BEDROCK_REGIONAL if self.needs.wants_kind(kind)]
        if not kinds or stop.is_set():
            return
        regions, gap = scan.regions(self.regions)
        if gap is not None:
            emit(gap)
        tasks = [(region, kind) for region in regions for kind in kinds]
        if not tasks:
            return
        with ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(tasks)), thread_name_prefix="auditor-bedrock"
        ) as pool:
            for future in [pool.submit(scan.run, region, kind, emit, stop) for region, kind in tasks]:
                future.result()


class _AccountScan:
    """The AI resources of one account: listings per region, records, and the shared lookups."""

    def __init__(self, needs: AttributeNeeds, account: AccountClients) -> None:
        self.needs = needs
        self.account = account
        self.account_id = account.account.account_id
        self.partition = account.account.partition
        self.profiles: Memo[tuple[str, str], Answer[dict[str, Any]]] = Memo()
        self.listings: dict[str, Callable[[str], Iterator[InventoryRecord]]] = {
            "ai-inference-profile": self.inference_profiles,
            "ai-agent": self.agents,
            "ai-invocation-log": self.invocation_log,
        }
        self.scopes: dict[str, str] = {
            "ai-inference-profile": "bedrock-inference-profiles",
            "ai-agent": "bedrock-agents",
            "ai-invocation-log": "bedrock-invocation-logging",
        }

    def wants(self, kind: str, path: str) -> bool:
        """True if a policy scoped to `kind` reads `path`."""
        return self.needs.for_kinds(kind).wants(path)

    def run(
        self, region: str, kind: str, emit: Callable[[InventoryRecord], None], stop: threading.Event
    ) -> None:
        """Emit the records of one listing; an unexpected failure is a gap for that listing alone."""
        try:
            for record in self.listings[kind](region):
                if stop.is_set():
                    return
                emit(record)
        except Exception as exc:  # one bad answer never stops the rest of the scan
            problem = Unknown(
                code=UnknownCode.ERROR, reason=f"{type(exc).__name__}: {bounded(str(exc))} (scanning {kind})"
            )
            emit(_gap(self.account_id, f"region:{region}:{self.scopes[kind]}", problem, None))

    # --- regions -----------------------------------------------------------------------------------

    def regions(self, given: frozenset[str] | None) -> tuple[list[str], CoverageGap | None]:
        """The enabled regions to list in (those of `given`, when given), and a gap if unreadable.

        With `--regions` and an unreadable region list, the given regions are listed anyway.
        """
        answer = self.account.call(None, "ec2", "DescribeRegions", ["regions"])
        enabled: list[str] | None = None
        problem: Unknown | None = None
        if answer.value is None:
            problem = _failure(answer, "ec2:DescribeRegions")
        else:
            entries = answer.value["Regions"]
            names = [entry.get("RegionName") if isinstance(entry, dict) else None for entry in entries]
            if not entries or not all(isinstance(name, str) and name for name in names):
                reason = (
                    f"malformed answer: a region list {bounded(repr(entries), 200)} (ec2:DescribeRegions)"
                )
                problem = Unknown(code=UnknownCode.ERROR, reason=reason)
            else:
                enabled = sorted(
                    str(entry["RegionName"]).lower()
                    for entry in entries
                    if entry.get("OptInStatus") not in NOT_ENABLED
                )
        gap = None if problem is None else _gap(self.account_id, "regions", problem, answer.evidence)
        if enabled is None:
            return (sorted(given) if given is not None else []), gap
        return [region for region in enabled if given is None or region in given], gap

    # --- application inference profiles ------------------------------------------------------------

    def inference_profiles(self, region: str) -> Iterator[InventoryRecord]:
        scope = f"region:{region}:bedrock-inference-profiles"
        params: dict[str, Any] = {"typeEquals": "APPLICATION", "maxResults": PAGE_SIZE}
        for item in self._pages(region, "bedrock", "ListInferenceProfiles", params, scope):
            if isinstance(item, CoverageGap):
                yield item
                continue
            entry, evidence = item
            if parse_arn(entry.get("inferenceProfileArn")) is None:
                yield self._malformed_entry(scope, "an inference profile without an ARN", entry, evidence)
            else:
                yield self._inference_profile(region, entry, evidence)

    def _inference_profile(self, region: str, entry: dict[str, Any], listed: Evidence) -> StorageResource:
        arn = str(entry["inferenceProfileArn"])
        unknown: dict[str, Unknown] = {}
        wanted = self.wants("ai-inference-profile", "processing")
        evidence = [listed.model_copy(update={"attributes": ["processing"] if wanted else []})]
        processing: Processing | None = None
        if wanted:
            regions, problem = profile_regions(entry.get("models"))
            if problem is None:
                processing = Processing(raw=arn, scope=processing_scope(regions), regions=regions)
            else:
                reason = f"malformed answer: {problem} (bedrock:ListInferenceProfiles)"
                unknown["processing"] = Unknown(code=UnknownCode.ERROR, reason=reason)
        tags = None
        if self.wants("ai-inference-profile", "tags"):
            answer = self.account.call(region, "bedrock", "ListTagsForResource", ["tags"], resourceARN=arn)
            evidence.append(answer.evidence)
            tags = self._tags(answer, "bedrock:ListTagsForResource", unknown)
        return StorageResource(
            provider="aws",
            kind="ai-inference-profile",
            account=self.account_id,
            name=str(entry.get("inferenceProfileName") or entry.get("inferenceProfileId") or arn),
            id=arn,
            scanned_at=now(),
            processing=processing,
            training=BEDROCK_DOES_NOT_TRAIN if self.wants("ai-inference-profile", "training") else None,
            tags=tags,
            unknown=unknown,
            evidence=evidence,
        )

    # --- agents ------------------------------------------------------------------------------------

    def agents(self, region: str) -> Iterator[InventoryRecord]:
        scope = f"region:{region}:bedrock-agents"
        params: dict[str, Any] = {"maxResults": PAGE_SIZE}
        for item in self._pages(region, "bedrock-agent", "ListAgents", params, scope):
            if isinstance(item, CoverageGap):
                yield item
                continue
            entry, evidence = item
            if not isinstance(entry.get("agentId"), str) or not entry["agentId"]:
                yield self._malformed_entry(scope, "an agent without an agentId", entry, evidence)
            else:
                yield self._agent(region, entry, evidence)

    def _agent(self, region: str, entry: dict[str, Any], listed: Evidence) -> StorageResource:
        agent_id = str(entry["agentId"])
        arn = f"arn:{self.partition}:bedrock:{region}:{self.account_id}:agent/{agent_id}"
        unknown: dict[str, Unknown] = {}
        evidence = [listed.model_copy(update={"attributes": []})]
        processing = self._agent_processing(region, agent_id, evidence, unknown)
        tags = None
        if self.wants("ai-agent", "tags"):
            answer = self.account.call(
                region, "bedrock-agent", "ListTagsForResource", ["tags"], resourceArn=arn
            )
            evidence.append(answer.evidence)
            tags = self._tags(answer, "bedrock-agent:ListTagsForResource", unknown)
        status = entry.get("agentStatus")
        return StorageResource(
            provider="aws",
            kind="ai-agent",
            account=self.account_id,
            name=str(entry.get("agentName") or agent_id),
            id=arn,
            scanned_at=now(),
            state=status.lower() if isinstance(status, str) and status else None,
            processing=processing,
            training=BEDROCK_DOES_NOT_TRAIN if self.wants("ai-agent", "training") else None,
            tags=tags,
            unknown=unknown,
            evidence=evidence,
        )

    def _agent_processing(
        self, region: str, agent_id: str, evidence: list[Evidence], unknown: dict[str, Unknown]
    ) -> Processing | None:
        if not self.wants("ai-agent", "processing"):
            return None
        answer = self.account.call(
            region, "bedrock-agent", "GetAgent", ["processing"], shown=_agent_shown, agentId=agent_id
        )
        evidence.append(answer.evidence)
        if answer.value is None:
            unknown["processing"] = _failure(answer, "bedrock-agent:GetAgent")
            return None
        models = agent_models(answer.value["agent"])
        if not models:
            reason = "GetAgent named no foundationModel (bedrock-agent:GetAgent)"
            unknown["processing"] = Unknown(code=UnknownCode.ERROR, reason=reason)
            return None
        regions: set[str] = set()
        problem: Unknown | None = None
        for model in models:
            resolved = self._model_regions(region, model)
            evidence.extend(e for e in resolved.evidence if e not in evidence)
            regions.update(resolved.regions)
            problem = problem or resolved.problem
        raw = ", ".join(models)
        known = sorted(regions)
        if problem is None:
            return Processing(raw=raw, scope=processing_scope(known), regions=known)
        if not known:
            unknown["processing"] = problem
            return None
        # Some models resolved: their regions are known members; the scope is not known.
        unknown["processing.regions"] = _members(problem)
        unknown["processing.scope"] = problem
        return Processing(raw=raw, scope=None, regions=known)

    def _model_regions(self, region: str, model: str) -> Resolved:
        """Where the model an agent in `region` names is processed (`ARN_ROUTING`, model ids, profiles)."""
        arn = parse_arn(model)
        if arn is not None:
            routing = ARN_ROUTING.get(arn.resource_type)
            if routing == "arn-region":
                return Resolved([arn.region or ANY_REGION], None, [])
            if routing == "profile":
                return self._profile_regions(arn.region or region, model)
            reason = f"foundationModel {bounded(repr(model), 200)} not understood (bedrock-agent:GetAgent)"
            return Resolved([], Unknown(code=UnknownCode.ERROR, reason=reason), [])
        # A model id is `provider.model[:version]` (one dot), invoked in the agent's region; any other
        # id (`eu.provider.model`, `global.provider.model`, an application profile id) is an inference
        # profile, resolved through the API whatever its prefix.
        if model.split(":", 1)[0].count(".") == 1:
            return Resolved([region], None, [])
        return self._profile_regions(region, model)

    def _profile_regions(self, region: str, identifier: str) -> Resolved:
        answer = self.profiles.get(
            (region, identifier),
            lambda: self.account.call(
                region,
                "bedrock",
                "GetInferenceProfile",
                ["processing"],
                inferenceProfileIdentifier=identifier,
            ),
        )
        if answer.value is None:
            return Resolved([], _failure(answer, "bedrock:GetInferenceProfile"), [answer.evidence])
        regions, problem = profile_regions(answer.value.get("models"))
        if problem is not None:
            reason = f"malformed answer: {problem} (bedrock:GetInferenceProfile {identifier})"
            return Resolved([], Unknown(code=UnknownCode.ERROR, reason=reason), [answer.evidence])
        return Resolved(regions, None, [answer.evidence])

    # --- model invocation logging ------------------------------------------------------------------

    def invocation_log(self, region: str) -> Iterator[InventoryRecord]:
        scope = f"region:{region}:bedrock-invocation-logging"
        answer = self.account.call(region, "bedrock", "GetModelInvocationLoggingConfiguration", ["location"])
        if answer.value is None:
            yield _gap(self.account_id, scope, _failure(answer, answer.evidence.call), answer.evidence)
            return
        config = answer.value.get("loggingConfig")
        if config is None:
            return  # no configuration: nothing is logged, so nothing is stored
        if not isinstance(config, dict):
            yield self._malformed_entry(
                scope, "a loggingConfig that is not an object", config, answer.evidence
            )
            return
        destinations, problem = logging_destinations(config)
        if not destinations and problem is None:
            return  # a configuration without a destination stores nothing
        unknown: dict[str, Unknown] = {}
        location: Location | None = None
        if self.wants("ai-invocation-log", "location"):
            if problem is None:
                raw = "; ".join(destinations)
                location = Location(raw=raw, type="region", primary=region, regions=[region], replicas=[])
            else:
                reason = f"malformed answer: {problem} ({answer.evidence.call})"
                unknown["location"] = Unknown(code=UnknownCode.ERROR, reason=reason)
        # The rule behind `location`, with its source, beside the answer it was read from.
        note = f"destinations are in the configuration's own account and region: {INVOCATION_LOGGING}"
        evidence = answer.evidence.model_copy(update={"response": {**answer.value, "auditor_note": note}})
        yield StorageResource(
            provider="aws",
            kind="ai-invocation-log",
            account=self.account_id,
            name=f"model-invocation-logging/{region}",
            id=f"aws:bedrock:{region}:{self.account_id}:model-invocation-logging",
            scanned_at=now(),
            location=location,
            unknown=unknown,
            evidence=[evidence],
        )

    # --- the AI services opt-out policy --------------------------------------------------------------

    def settings(self) -> StorageResource:
        """The account's `ai-settings` record: the effective AI services opt-out policy's verdict."""
        training: Training | None = None
        unknown: dict[str, Unknown] = {}
        evidence: list[Evidence] = []
        if self.wants("ai-settings", "training"):
            answer = self.account.call(
                None, "organizations", "DescribeEffectivePolicy", ["training"], PolicyType=OPT_OUT_POLICY_TYPE
            )
            evidence.append(answer.evidence)
            if answer.absent and isinstance(answer.error, ClientError):
                code = str(answer.error.response.get("Error", {}).get("Code"))
                training = _aws_default(f"no effective {OPT_OUT_POLICY_TYPE} ({code})")
            elif answer.value is None:
                unknown["training"] = _failure(answer, "organizations:DescribeEffectivePolicy")
            else:
                training, problem = opt_out_training(answer.value["EffectivePolicy"]["PolicyContent"])
                if problem is not None:
                    unknown["training"] = problem
        return StorageResource(
            provider="aws",
            kind="ai-settings",
            account=self.account_id,
            name="ai-services-opt-out-policy",
            id=f"aws:organizations::{self.account_id}:effective-policy/{OPT_OUT_POLICY_TYPE}",
            scanned_at=now(),
            training=training,
            unknown=unknown,
            evidence=evidence,
        )

    # --- shared ------------------------------------------------------------------------------------

    def _pages(
        self, region: str, service: str, operation: str, params: dict[str, Any], scope: str
    ) -> Iterator[tuple[dict[str, Any], Evidence] | CoverageGap]:
        """Each entry of a `nextToken`-paged listing with its evidence; a failed page is a gap."""
        key = LISTED[operation]
        call = f"{service}:{operation}"
        token: str | None = None
        while True:
            page = {**params, "nextToken": token} if token else params
            answer = self.account.call(region, service, operation, [], **page)
            if answer.value is None:
                yield _gap(self.account_id, scope, _failure(answer, call), answer.evidence)
                return
            for entry in answer.value[key]:
                if isinstance(entry, dict):
                    yield entry, answer.evidence.model_copy(update={"response": entry})
                else:
                    yield self._malformed_entry(
                        scope, "an entry that is not an object", entry, answer.evidence
                    )
            following = answer.value.get("nextToken")
            if not following:
                return
            if following == token:
                problem = Unknown(
                    code=UnknownCode.ERROR, reason=f"malformed answer: nextToken repeated ({call})"
                )
                yield _gap(self.account_id, scope, problem, answer.evidence)
                return
            token = str(following)

    def _malformed_entry(self, scope: str, what: str, entry: object, listed: Evidence) -> CoverageGap:
        """A listing entry that cannot be scanned: a gap, never a silently missing resource."""
        reason = f"malformed answer: {what}: {bounded(repr(entry), 200)} ({listed.call})"
        evidence = listed.model_copy(update={"response": entry, "error": reason})
        return _gap(self.account_id, scope, Unknown(code=UnknownCode.ERROR, reason=reason), evidence)

    @staticmethod
    def _tags(
        answer: Answer[dict[str, Any]], call: str, unknown: dict[str, Unknown]
    ) -> dict[str, str] | None:
        """Bedrock's tag list (`[{key, value}]`) or Bedrock Agents' tag map, as a mapping."""
        if answer.value is None:
            unknown["tags"] = _failure(answer, call)
            return None
        tags = answer.value.get("tags")
        if isinstance(tags, dict):
            return {str(k): str(v) for k, v in tags.items()}
        if isinstance(tags, list) and all(isinstance(t, dict) and "key" in t for t in tags):
            return {str(t["key"]): str(t.get("value") or "") for t in tags}
        reason = f"malformed answer: tags {bounded(repr(tags), 200)} ({call})"
        unknown["tags"] = Unknown(code=UnknownCode.ERROR, reason=reason)
        return None
