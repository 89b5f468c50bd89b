"""Teach moto 5.2.5's IAM enforcement about presigned requests and CORS preflights.

Under enforcement moto reads the caller's credential only from the
`Authorization` header (`moto/iam/access_control.py`,
`IAMRequestBase.__init__`), so every presigned request (query-string GET/PUT,
POST-policy form upload) dies with HTTP 500 `KeyError: HTTP_AUTHORIZATION`.
AWS instead takes the credential from the query string or the form and
evaluates that principal's policies. This module patches moto at runtime to
do the same:

* SigV4 presigned URL: access key from `X-Amz-Credential`, session token from
  `X-Amz-Security-Token`; SigV2: `AWSAccessKeyId` (+ `x-amz-security-token`);
  POST-policy upload: the same names as form fields (any case).
* The principal's policies are then evaluated exactly as for a signed
  request. Not checked, unlike AWS: the presigned signature, its expiry and
  the POST policy's conditions (moto has no verifier for them). Locally the
  holder of a tenant's URL (which carries the tenant's key id and token) can
  therefore make any request the tenant role allows, not only the signed
  one; IAM still confines it to the tenant's scope, which is what the
  portal's isolation relies on and what the tests check.
* A POST upload is authorized against `arn:aws:s3:::bucket/key` (the form's
  `key`), with `s3:PutObject`, as AWS does; moto checks the bucket ARN only.
* A request with no credential at all is refused (403) instead of crashing.
* CORS preflights (OPTIONS) skip IAM and moto's anonymous-read ACL check:
  browsers never sign them and AWS does not authenticate them; the bucket's
  CORS rules alone decide the answer.
* The `s3:prefix` condition of S3 list requests is evaluated (see
  `conditions_hold`): moto's evaluator knows only `StringEquals`, treats any
  other operator as met and gives S3 requests no condition values, so a pool
  tenant allowed `ListBucket` on the shared bucket "where s3:prefix is like
  tenants/<slug>/*" could list every tenant's keys.
* A role that no longer exists cannot be assumed (AccessDenied, as on AWS),
  and sessions of a deleted role lose every permission: moto issued
  credentials for a deleted role, and requests made with them crashed (500),
  so an offboarded tenant looked reachable.

`apply()` is idempotent. It only changes requests that carry no
`Authorization` header, POST uploads, and OPTIONS; and moto only consults
any of this while enforcement is on.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_PATCHED_MARK = "_mlaas_presigned_auth"
# SigV2 presigned URLs carry no region or date; the region only selects the
# partition ("aws") in moto, and the date is never looked at because the
# signature of a presigned request is not verified.
_SIGV2_CREDENTIAL_SCOPE = "19700101/us-east-1/s3/aws4_request"


def presigned_credential(path: str, data: Mapping[str, Any]) -> tuple[str, str] | None:
    """(credential scope, session token) of a presigned request, or None.

    `path` is moto's raw path with the query string; `data` is moto's parsed
    parameters: the form fields of a POST upload, else the query string.
    Names are matched case-insensitively (boto3 sends `x-amz-credential` in a
    POST form, `X-Amz-Credential` in a URL).
    """
    fields: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(path).query, keep_blank_values=True):
        fields.setdefault(name.lower(), value)
    for name, value in data.items():
        text = _first(value)
        if isinstance(name, str) and text is not None:
            fields[name.lower()] = text

    token = fields.get("x-amz-security-token", "")
    if fields.get("x-amz-credential"):
        return fields["x-amz-credential"], token
    if fields.get("awsaccesskeyid"):
        return f"{fields['awsaccesskeyid']}/{_SIGV2_CREDENTIAL_SCOPE}", token
    return None


def post_upload_key(data: Mapping[str, Any]) -> str | None:
    """The object key of a POST-policy upload (moto has already replaced `${filename}`)."""
    return _first(data.get("key"))


# S3 actions whose requests carry the `s3:prefix` condition key (the `prefix`
# query parameter), the only S3 condition key modelled here.
_PREFIX_ACTIONS = frozenset({"s3:ListBucket", "s3:ListBucketVersions"})
_MODELLED_KEYS = frozenset({"s3:prefix"})
_STRING_OPERATORS = {
    "StringEquals": operator.eq,
    "StringNotEquals": operator.eq,
    "StringLike": lambda pattern, value: _like(pattern, value),
    "StringNotLike": lambda pattern, value: _like(pattern, value),
}


def s3_condition_context(action: str, path: str) -> dict[str, str]:
    """The modelled condition keys of an S3 request: `s3:prefix` of a list request, if sent."""
    if action not in _PREFIX_ACTIONS:
        return {}
    query = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
    return {"s3:prefix": query["prefix"]} if "prefix" in query else {}


def _like(pattern: str, value: str) -> bool:
    """IAM `StringLike`: case-sensitive, `*` any run of characters, `?` one character."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def conditions_hold(condition: Mapping[str, Mapping[str, Any]] | None, context: Mapping[str, str]) -> bool:
    """Whether a statement's `Condition` block is met by a request's modelled keys.

    Only the string operators on modelled keys (`s3:prefix`) are decided here;
    every other condition is left as moto decided it. As on AWS, a key the
    request does not carry fails a positive operator and meets a negated one
    or an `...IfExists` one.
    """
    for op_name, keys in (condition or {}).items():
        base = op_name.removesuffix("IfExists")
        matches = _STRING_OPERATORS.get(base)
        if matches is None or not isinstance(keys, Mapping):
            continue
        negated = base.startswith("StringNot")
        for key, expected in keys.items():
            if key.lower() not in _MODELLED_KEYS:
                continue
            actual = context.get(key.lower())
            if actual is None:
                if negated or op_name.endswith("IfExists"):
                    continue
                return False
            patterns = [expected] if isinstance(expected, str) else list(expected)
            if any(matches(pattern, actual) for pattern in patterns) == negated:
                return False
    return True


def _allowed_with_conditions(policies: list[Any], action: str, resource: str, context: Mapping[str, str]) -> bool:
    """Is there an Allow statement for action and resource whose conditions hold?"""
    from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, PermissionResult

    for policy in policies:
        statements = IAMPolicy(policy)._policy_json["Statement"]
        for statement in statements if isinstance(statements, list) else [statements]:
            if statement.get("Effect") != "Allow":
                continue
            unconditional = {name: value for name, value in statement.items() if name != "Condition"}
            if IAMPolicyStatement(unconditional).is_action_permitted(action, resource) != PermissionResult.PERMITTED:
                continue
            if conditions_hold(statement.get("Condition"), context):
                return True
    return False


def _first(value: Any) -> str | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def is_applied() -> bool:
    from moto.iam.access_control import IAMRequestBase

    return getattr(IAMRequestBase.__init__, _PATCHED_MARK, False)


def apply() -> None:
    """Patch moto (in this process) once; later calls do nothing."""
    from moto.core.exceptions import AccessDeniedError
    from moto.iam.access_control import AssumedRoleAccessKey, IAMRequest, IAMRequestBase, S3IAMRequest
    from moto.iam.exceptions import NotFoundException
    from moto.s3.responses import S3Response

    if is_applied():
        return

    original_init = IAMRequestBase.__init__
    original_check_signature = IAMRequestBase.check_signature
    original_check_action_permitted = S3IAMRequest.check_action_permitted
    original_s3_authorize = S3Response._authenticate_and_authorize_s3_action
    original_key_response = S3Response._key_response
    original_iam_check_action_permitted = IAMRequest.check_action_permitted
    original_collect_role_policies = AssumedRoleAccessKey.collect_policies

    @functools.wraps(original_init)
    def init(
        self: Any,
        account_id: str,
        method: str,
        path: str,
        data: dict[str, Any],
        body: bytes,
        headers: Any,
        action: str,
    ) -> None:
        self._mlaas_presigned = False
        if "Authorization" not in headers:
            credential = presigned_credential(path, data)
            if credential is None:
                # Anonymous under enforcement: moto would crash (500); AWS,
                # with no resource policy granting anonymous access, says 403.
                self._data = data
                if isinstance(self, S3IAMRequest):
                    self._raise_access_denied()
                raise AccessDeniedError(user_arn="anonymous", action=str(action))
            scope, token = credential
            # Hand moto's unchanged code the header it expects. The fake
            # signature is never compared: check_signature() below skips
            # presigned requests.
            headers = dict(headers.items())
            headers["Authorization"] = (
                f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=presigned"
            )
            if token:
                # moto tells an assumed-role key from a user key by this header.
                headers["X-Amz-Security-Token"] = token
            self._mlaas_presigned = True
        original_init(self, account_id, method, path, data, body, headers, action)

    @functools.wraps(original_check_signature)
    def check_signature(self: Any) -> None:
        if getattr(self, "_mlaas_presigned", False):
            return  # not verified for presigned requests: see the module docstring
        original_check_signature(self)

    @functools.wraps(original_check_action_permitted)
    def check_action_permitted(self: Any, resource: str) -> None:
        # A POST-policy upload writes bucket/key; moto passes the bucket ARN.
        if self._method == "POST" and self._action == "s3:PutObject":
            key = post_upload_key(self._data)
            bucket_part = resource.partition(":::")[2]
            if key and bucket_part and "/" not in bucket_part:
                resource = f"{resource}/{key}"
        original_check_action_permitted(self, resource)
        # moto allowed it without looking at StringLike & co. or at the
        # request's `s3:prefix`: the request must also be allowed by a
        # statement whose conditions hold. This can only refuse, never grant.
        context = s3_condition_context(self._action, self._path)
        if not _allowed_with_conditions(self._access_key.collect_policies(), self._action, resource, context):
            self._raise_access_denied()

    @functools.wraps(original_s3_authorize)
    def s3_authorize(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        if self.method == "OPTIONS":
            return  # CORS preflight: never signed, never authenticated by AWS
        original_s3_authorize(self, bucket_name=bucket_name, key_name=key_name)

    @functools.wraps(original_key_response)
    def key_response(self: Any, request: Any, full_url: str) -> Any:
        if request.method == "OPTIONS":
            # moto runs its anonymous-read ACL check before it looks at the
            # method, so a preflight for an existing key (a browser replacing
            # or reading it) got 403 whatever the CORS rules said.
            bucket_name = self.parse_bucket_name_from_url(request, full_url)
            return self._response_options(request.headers, bucket_name)
        return original_key_response(self, request, full_url)

    @functools.wraps(original_iam_check_action_permitted)
    def iam_check_action_permitted(self: Any, resource: str) -> None:
        if self._action == "sts:AssumeRole":
            try:
                self.backend.get_role_by_arn(resource)
            except NotFoundException:
                self._raise_access_denied()  # moto would hand out credentials for it
        original_iam_check_action_permitted(self, resource)

    @functools.wraps(original_collect_role_policies)
    def collect_role_policies(self: Any) -> list[Any]:
        try:
            return original_collect_role_policies(self)
        except NotFoundException:
            return []  # the role was deleted: its sessions are allowed nothing

    setattr(init, _PATCHED_MARK, True)
    IAMRequestBase.__init__ = init
    IAMRequestBase.check_signature = check_signature
    S3IAMRequest.check_action_permitted = check_action_permitted
    S3Response._authenticate_and_authorize_s3_action = s3_authorize
    S3Response._key_response = key_response
    IAMRequest.check_action_permitted = iam_check_action_permitted
    AssumedRoleAccessKey.collect_policies = collect_role_policies
