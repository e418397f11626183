"""A loopback server speaking Bedrock and Bedrock Agents (REST-JSON) and Organizations (JSON 1.1).

moto implements neither ListInferenceProfiles, GetInferenceProfile nor DescribeEffectivePolicy, so
the AI side of the AWS scanner is tested against recorded answers (tests/scan/aws/recorded/*.json)
served the way AWS serves them. Routes, field names and error shapes are those of botocore's
service models (botocore/data/{bedrock,bedrock-agent,organizations}/*/service-2.json):

  GET  /inference-profiles?type=APPLICATION&maxResults=N&nextToken=T   bedrock:ListInferenceProfiles
  GET  /inference-profiles/{inferenceProfileIdentifier}                 bedrock:GetInferenceProfile
  GET  /logging/modelinvocations                                        bedrock:GetModelInvocationLoggingConfiguration
  POST /listTagsForResource           {"resourceARN"}                   bedrock:ListTagsForResource
  POST /agents/                       {"maxResults", "nextToken"}       bedrock-agent:ListAgents
  GET  /agents/{agentId}/                                               bedrock-agent:GetAgent
  GET  /tags/{resourceArn}                                              bedrock-agent:ListTagsForResource
  POST /  X-Amz-Target: AWSOrganizationsV20161128.DescribeEffectivePolicy

One server answers every region: the region is the one of the request's SigV4 credential scope, as
a regional endpoint would be. Errors are AWS's: REST-JSON with `x-amzn-ErrorType` and
`{"message"}` (AccessDeniedException 403, ThrottlingException 429 with Retry-After,
ResourceNotFoundException 404); JSON 1.1 with `{"__type", "Message"}` and status 400. Any other
request (an S3 call reaching this server, say) is counted as `unrouted` and answered 404.

A fixture document describes one account::

  {"regions": {"eu-west-1": {"inference_profiles": [<InferenceProfileSummary>, ...],
                             "profiles": {"<id or ARN>": <GetInferenceProfileResponse>},
                             "agents": [<AgentSummary>, ...], "agent_details": {"<agentId>": <Agent>},
                             "logging": <GetModelInvocationLoggingConfigurationResponse>,
                             "tags": {"<ARN>": [<Tag>] | {<key>: <value>}}}},
   "effective_policy": <DescribeEffectivePolicyResponse> | {"error": "<code>"},
   "page_size": 2,
   "faults": [<Fault>, ...]}

`allowed`, when set, is the set of IAM actions the caller holds: any other operation is denied,
as AWS denies it (IAM_ACTIONS maps each operation to its action, from the Service Authorization
Reference). Self-contained (stdlib only).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.loopback import LoopbackServer

RECORDED = Path(__file__).resolve().parent / "recorded"
ORGANIZATIONS_TARGET = "AWSOrganizationsV20161128."
REST_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_CREDENTIAL = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")

# Each operation's IAM action ("Actions defined by Amazon Bedrock" / "AWS Organizations").
IAM_ACTIONS: dict[str, str] = {
    "bedrock:ListInferenceProfiles": "bedrock:ListInferenceProfiles",
    "bedrock:GetInferenceProfile": "bedrock:GetInferenceProfile",
    "bedrock:GetModelInvocationLoggingConfiguration": "bedrock:GetModelInvocationLoggingConfiguration",
    "bedrock:ListTagsForResource": "bedrock:ListTagsForResource",
    "bedrock-agent:ListAgents": "bedrock:ListAgents",
    "bedrock-agent:GetAgent": "bedrock:GetAgent",
    "bedrock-agent:ListTagsForResource": "bedrock:ListTagsForResource",
    "organizations:DescribeEffectivePolicy": "organizations:DescribeEffectivePolicy",
}
# AWS's messages for the errors the server gives without a fault saying otherwise.
_MESSAGES = {
    "AccessDeniedException": "User: {caller} is not authorized to perform: {action} because no "
    "identity-based policy allows the {action} action",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "TooManyRequestsException": "AWS Organizations can't complete your request because another request "
    "is already in progress. Try again later.",
    "EffectivePolicyNotFoundException": "No effective policy of type AISERVICES_OPT_OUT_POLICY was found "
    "for the account.",
    "AWSOrganizationsNotInUseException": "Your account is not a member of an organization.",
}
CALLER = "arn:aws:iam::123456789012:user/auditor"


@dataclass
class Fault:
    """An injected answer: which requests it matches (operation, region, key), what it sends."""

    operation: str
    status: int = 403
    code: str = "AccessDeniedException"
    message: str | None = None
    region: str | None = None
    key: str | None = None  # a page number, agent id or profile identifier
    times: int | None = None
    body: str | None = None  # a raw body answered instead of an error document
    retry_after: str | None = None
    fired: int = 0

    def matches(self, operation: str, region: str, key: str | None) -> bool:
        """Whether this fault answers the request (and has not used up its count)."""
        if self.operation != operation or (self.times is not None and self.fired >= self.times):
            return False
        if self.region is not None and self.region != region:
            return False
        return self.key is None or self.key == key


@dataclass
class Estate:
    """One account's recorded AI resources, per region, and the faults to inject."""

    regions: dict[str, dict[str, Any]] = field(default_factory=dict)
    effective_policy: dict[str, Any] | None = None
    page_size: int = 1000
    faults: list[Fault] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Estate:
        """Build from a fixture document."""
        return cls(
            regions=dict(data.get("regions", {})),
            effective_policy=data.get("effective_policy"),
            page_size=int(data.get("page_size", 1000)),
            faults=[Fault(**f) for f in data.get("faults", [])],
        )

    @classmethod
    def load(cls, name: str) -> Estate:
        """The fixture tests/scan/aws/recorded/<name>.json."""
        return cls.from_json(json.loads((RECORDED / f"{name}.json").read_text(encoding="utf-8")))


@dataclass
class Answer:
    """One HTTP answer."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _token(operation: str, region: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{operation}|{region}|{offset}".encode()).decode()


def _offset(operation: str, region: str, token: str) -> int | None:
    try:
        owner, owner_region, offset = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        return int(offset) if (owner, owner_region) == (operation, region) else None
    except (ValueError, UnicodeDecodeError):
        return None


class BedrockServer(LoopbackServer):
    """Serves a recorded `Estate` on 127.0.0.1 and counts the requests, by operation and region."""

    def __init__(self, estate: Estate | None = None) -> None:
        self.estate = estate or Estate()
        self.allowed: set[str] | None = None
        self.requests: Counter[str] = Counter()
        self.by_region: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()
        super().__init__(_make_handler(self), "bedrock-server")

    def load(self, estate: Estate, allowed: set[str] | None = None) -> None:
        """Serve `estate` (with `allowed` IAM actions, None: all) and reset the counters."""
        with self.lock:
            self.estate = estate
            self.allowed = allowed
            self.requests.clear()
            self.by_region.clear()

    def ai_requests(self) -> int:
        """Requests to the AI operations (every routed request)."""
        with self.lock:
            return sum(n for operation, n in self.requests.items() if operation in IAM_ACTIONS)

    # --- request handling ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        """Answer one request."""
        scope = _CREDENTIAL.search(headers.get("authorization", ""))
        region = scope.group("region") if scope else ""
        parts = urlsplit(target)
        request = Request(region, unquote(parts.path), parse_qs(parts.query), _json_body(body))
        operation = self._route(method, parts.path, headers)
        with self.lock:
            self.requests[operation or f"unrouted:{method} {parts.path}"] += 1
            self.by_region[(operation or "unrouted", region)] += 1
        if operation is None:
            return _rest_error(404, "UnknownOperationException", f"no route for {method} {parts.path}")
        if scope is None:
            return _error(
                operation, 403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        return (
            self._denied(operation) or self._fault(operation, request) or HANDLERS[operation](self, request)
        )

    @staticmethod
    def _route(method: str, path: str, headers: dict[str, str]) -> str | None:
        target = headers.get("x-amz-target", "")
        if method == "POST" and path == "/" and target.startswith(ORGANIZATIONS_TARGET):
            return f"organizations:{target[len(ORGANIZATIONS_TARGET) :]}"
        for route_method, pattern, operation in ROUTES:
            if method == route_method and pattern.fullmatch(path):
                return operation
        return None

    def _denied(self, operation: str) -> Answer | None:
        action = IAM_ACTIONS.get(operation, operation)
        if self.allowed is None or action in self.allowed:
            return None
        message = _MESSAGES["AccessDeniedException"].format(caller=CALLER, action=action)
        return _error(operation, 403, "AccessDeniedException", message)

    def _fault(self, operation: str, request: Request) -> Answer | None:
        key = self._key(operation, request)
        with self.lock:
            for fault in self.estate.faults:
                if fault.matches(operation, request.region, key):
                    fault.fired += 1
                    break
            else:
                return None
        if fault.body is not None:
            return Answer(fault.status, fault.body.encode(), {"Content-Type": "application/json"})
        action = IAM_ACTIONS.get(operation, operation)
        message = fault.message or _MESSAGES.get(fault.code, fault.code).format(caller=CALLER, action=action)
        answer = _error(operation, fault.status, fault.code, message)
        if fault.retry_after is not None:
            answer.headers["Retry-After"] = fault.retry_after
        return answer

    def _key(self, operation: str, request: Request) -> str | None:
        """What a fault's `key` matches: the page number of a listing, else the resource named."""
        token = request.query_value("nextToken") or request.body.get("nextToken")
        if operation in PAGED:
            offset = _offset(PAGED[operation], request.region, str(token)) if token else 0
            return str((offset or 0) // self.estate.page_size + 1)
        return request.path.rstrip("/").rsplit("/", 1)[-1] if request.path.count("/") > 1 else None

    def recorded(self, region: str, section: str) -> Any:
        """The fixture's `section` for `region` (empty when not recorded)."""
        return self.estate.regions.get(region, {}).get(section, {} if section in ("profiles", "tags") else [])

    def page(self, operation: str, request: Request, items: list[Any], limit: Any) -> Answer | _Page:
        """One page of `items` (the fixture's page size caps `limit`), or a ValidationException."""
        token = request.query_value("nextToken") or request.body.get("nextToken")
        offset = 0
        if token:
            found = _offset(operation, request.region, str(token))
            if found is None:
                return _rest_error(400, "ValidationException", "Invalid pagination token")
            offset = found
        size = min(int(limit or 1000), self.estate.page_size)
        following = _token(operation, request.region, offset + size) if offset + size < len(items) else None
        return _Page(items[offset : offset + size], following)


@dataclass
class Request:
    """What a route reads of a request: the signing region, path, query and JSON body."""

    region: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any]

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class _Page:
    items: list[Any]
    next_token: str | None

    def document(self, key: str) -> Answer:
        document: dict[str, Any] = {key: self.items}
        if self.next_token:
            document["nextToken"] = self.next_token
        return _json(document)


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _list_inference_profiles(server: BedrockServer, request: Request) -> Answer:
    wanted = request.query_value("type")
    items = [
        p for p in server.recorded(request.region, "inference_profiles") if wanted in (None, p.get("type"))
    ]
    page = server.page("ListInferenceProfiles", request, items, request.query_value("maxResults"))
    return page if isinstance(page, Answer) else page.document("inferenceProfileSummaries")


def _get_inference_profile(server: BedrockServer, request: Request) -> Answer:
    # System profiles are recorded under `profiles`; application profiles are those listed.
    identifier = request.path[len("/inference-profiles/") :]
    profiles: dict[str, Any] = server.recorded(request.region, "profiles")
    known = [*profiles.values(), *server.recorded(request.region, "inference_profiles")]
    found = profiles.get(identifier) or next(
        (p for p in known if identifier in (p.get("inferenceProfileArn"), p.get("inferenceProfileId"))),
        None,
    )
    if found is None:
        return _rest_error(
            404, "ResourceNotFoundException", "The specified inference profile does not exist."
        )
    return _json(found)


def _get_logging(server: BedrockServer, request: Request) -> Answer:
    # No configuration: Bedrock answers 200 with an empty JSON object.
    return _json(server.estate.regions.get(request.region, {}).get("logging") or {})


def _tags(server: BedrockServer, arn: str | None) -> Answer:
    tags: dict[str, Any] = {}
    for region in server.estate.regions.values():
        tags.update(region.get("tags", {}))
    if arn not in tags:
        return _rest_error(404, "ResourceNotFoundException", f"The resource {arn} was not found.")
    return _json({"tags": tags[arn]})


def _list_agents(server: BedrockServer, request: Request) -> Answer:
    items = server.recorded(request.region, "agents")
    page = server.page("ListAgents", request, items, request.body.get("maxResults"))
    return page if isinstance(page, Answer) else page.document("agentSummaries")


def _get_agent(server: BedrockServer, request: Request) -> Answer:
    agent_id = request.path.split("/")[2]
    agent = server.estate.regions.get(request.region, {}).get("agent_details", {}).get(agent_id)
    if agent is None:
        message = (
            f"Failed to retrieve resource because it doesn't exist. Please check the agentId {agent_id}."
        )
        return _rest_error(404, "ResourceNotFoundException", message)
    return _json({"agent": agent})


def _describe_effective_policy(server: BedrockServer, request: Request) -> Answer:
    if request.body.get("PolicyType") != "AISERVICES_OPT_OUT_POLICY" or "TargetId" in request.body:
        message = "The recorded server answers only for the caller's own AISERVICES_OPT_OUT_POLICY."
        return _json_error(400, "InvalidInputException", message)
    policy = server.estate.effective_policy
    if policy is None or "error" in policy:
        code = str((policy or {}).get("error") or "EffectivePolicyNotFoundException")
        return _json_error(400, code, _MESSAGES.get(code, code))
    return _json(policy, "application/x-amz-json-1.1")


# REST-JSON routes: (method, path pattern, operation), from the service models' `requestUri`.
ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(r"/inference-profiles"), "bedrock:ListInferenceProfiles"),
    ("GET", re.compile(r"/inference-profiles/.+"), "bedrock:GetInferenceProfile"),
    ("GET", re.compile(r"/logging/modelinvocations"), "bedrock:GetModelInvocationLoggingConfiguration"),
    ("POST", re.compile(r"/listTagsForResource"), "bedrock:ListTagsForResource"),
    ("POST", re.compile(r"/agents/"), "bedrock-agent:ListAgents"),
    ("GET", re.compile(r"/agents/[^/]+/"), "bedrock-agent:GetAgent"),
    ("GET", re.compile(r"/tags/.+"), "bedrock-agent:ListTagsForResource"),
)
HANDLERS: dict[str, Any] = {
    "bedrock:ListInferenceProfiles": _list_inference_profiles,
    "bedrock:GetInferenceProfile": _get_inference_profile,
    "bedrock:GetModelInvocationLoggingConfiguration": _get_logging,
    "bedrock:ListTagsForResource": lambda server, request: _tags(server, request.body.get("resourceARN")),
    "bedrock-agent:ListAgents": _list_agents,
    "bedrock-agent:GetAgent": _get_agent,
    "bedrock-agent:ListTagsForResource": lambda server, request: _tags(server, request.path[len("/tags/") :]),
    "organizations:DescribeEffectivePolicy": _describe_effective_policy,
}
# Paged listings: operation -> the name their page tokens carry.
PAGED: dict[str, str] = {
    "bedrock:ListInferenceProfiles": "ListInferenceProfiles",
    "bedrock-agent:ListAgents": "ListAgents",
}


def _json(document: Any, content_type: str = "application/json") -> Answer:
    return Answer(200, json.dumps(document).encode(), {"Content-Type": content_type})


def _rest_error(status: int, code: str, message: str) -> Answer:
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": f"{code}:{REST_ERROR_NAMESPACE}"}
    return Answer(status, json.dumps({"message": message}).encode(), headers)


def _json_error(status: int, code: str, message: str) -> Answer:
    body = json.dumps({"__type": code, "Message": message}).encode()
    return Answer(status, body, {"Content-Type": "application/x-amz-json-1.1"})


def _error(operation: str, status: int, code: str, message: str) -> Answer:
    """An error in the protocol of `operation`'s service (JSON 1.1 errors are always 400)."""
    if operation.startswith("organizations:"):
        return _json_error(400 if status in (403, 429) else status, code, message)
    return _rest_error(status, code, message)


def _make_handler(server: BedrockServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body leave as separate writes: no 40 ms stall

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            answer = server.handle(self.command, self.path, headers, body)
            self.send_response(answer.status)
            for name, value in {**answer.headers, "x-amzn-RequestId": str(uuid.uuid4())}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
