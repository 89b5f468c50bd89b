"""A small IAM policy evaluator: the runtime's own check where the emulator does not enforce IAM.

moto (5.2.5) authorizes every ECR and CloudWatch Logs request against the
resource "*" (only S3, SQS, IAM and STS name the real resource), so a policy
that grants `ecr:BatchGetImage` on one repository is refused there, and one
granting `logs:*` on "*" would pass for any group. AWS evaluates the real
resource; so does this module, before the local runtime makes such a call.
(IAM's SimulatePrincipalPolicy would be the API for it, but moto does not
implement it.)

Covered: identity policies (inline and attached) of a role, Allow/Deny,
Action/NotAction and Resource/NotResource with `*` and `?` wildcards, and
the condition operators the portal's policies use (StringEquals, StringLike,
their Not forms) on the context keys the caller passes. An explicit Deny
wins; no Allow means an implicit deny, as in AWS.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote


@dataclass(frozen=True)
class Decision:
    allowed: bool
    action: str
    resource: str
    reason: str  # "allowed by <policy>/<sid>", "explicitly denied by ...", "no statement allows it"

    def denial(self, principal: str) -> str:
        """AWS's sentence for a refused call, naming the action."""
        return (f"User: {principal} is not authorized to perform: {self.action} on resource: {self.resource} "
                f"because {self.reason}")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    regex = fnmatch.translate(pattern)  # * and ? as IAM means them; [ ] are literal in ARNs we use
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.match(regex, value, flags) is not None


def _matches_action(patterns: list[str], action: str) -> bool:
    return any(_wildcard(pattern, action, case_sensitive=False) for pattern in patterns)


def _matches_resource(patterns: list[str], resource: str) -> bool:
    return any(_wildcard(pattern, resource) for pattern in patterns)


_CONDITIONS = {
    "StringEquals": lambda expected, actual: actual == expected,
    "StringLike": lambda expected, actual: _wildcard(expected, actual),
}


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    for operator, clauses in condition.items():
        negated = operator.startswith("StringNot")
        base = operator.replace("Not", "", 1) if negated else operator
        test = _CONDITIONS.get(base)
        if test is None:
            return False  # an operator we cannot evaluate never grants anything
        for key, expected in clauses.items():
            actual = context.get(key)
            if actual is None:
                if not negated:
                    return False
                continue
            hit = any(test(value, actual) for value in _as_list(expected))
            if hit == negated:
                return False
    return True


def evaluate(policies: dict[str, dict], action: str, resource: str, context: dict[str, str] | None = None
             ) -> Decision:
    """Whether `policies` ({name: document}) allow `action` on `resource`."""
    context = context or {}
    allowed_by = ""
    for name, document in policies.items():
        for index, statement in enumerate(_as_list(document.get("Statement"))):
            label = f"{name}/{statement.get('Sid') or index}"
            if "Action" in statement and not _matches_action(_as_list(statement["Action"]), action):
                continue
            if "NotAction" in statement and _matches_action(_as_list(statement["NotAction"]), action):
                continue
            if "Resource" in statement and not _matches_resource(_as_list(statement["Resource"]), resource):
                continue
            if "NotResource" in statement and _matches_resource(_as_list(statement["NotResource"]), resource):
                continue
            if not _condition_holds(statement.get("Condition") or {}, context):
                continue
            if statement.get("Effect") == "Deny":
                return Decision(False, action, resource, f"an explicit deny in {label}")
            allowed_by = allowed_by or label
    if allowed_by:
        return Decision(True, action, resource, f"allowed by {allowed_by}")
    return Decision(False, action, resource, "no identity-based policy allows the action")


def role_policies(iam_client: Any, role_name: str) -> dict[str, dict]:
    """The identity policies of a role, inline and attached, by name (read as the platform).

    botocore errors leave as domain errors (core.aws.errors): IAM throttling past botocore's own retries is an
    AwsRetryableError, so a build requeues with backoff instead of failing with an internal error
    (bench/faults.py's throttling found one).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from core.aws.errors import translate

    try:
        return _role_policies(iam_client, role_name)
    except (BotoCoreError, ClientError) as exc:
        raise translate(exc, getattr(exc, "operation_name", "")) from exc


def _role_policies(iam_client: Any, role_name: str) -> dict[str, dict]:
    documents: dict[str, dict] = {}
    for name in iam_client.list_role_policies(RoleName=role_name).get("PolicyNames", []):
        document = iam_client.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        documents[name] = _document(document)
    for attached in iam_client.list_attached_role_policies(RoleName=role_name).get("AttachedPolicies", []):
        policy = iam_client.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam_client.get_policy_version(PolicyArn=attached["PolicyArn"],
                                                VersionId=policy["DefaultVersionId"])["PolicyVersion"]
        documents[attached["PolicyName"]] = _document(version["Document"])
    return documents


def _document(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    text = unquote(value)
    return json.loads(text)
