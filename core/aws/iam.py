from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from core.aws import arns
from core.aws.base import Gateway
from core.aws.clients import TemporaryCredentials
from core.aws.errors import AwsAccessDenied, AwsError, AwsNotFound

logger = logging.getLogger(__name__)


class IamGateway(Gateway):
    def ensure_role(self, name: str, *, trust_policy: dict, tags: dict[str, str], description: str = "") -> str:
        try:
            return self._call("get_role", RoleName=name)["Role"]["Arn"]
        except AwsNotFound:
            pass
        try:
            role = self._call(
                "create_role",
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust_policy),
                Description=description,
                MaxSessionDuration=43200,
                Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())],
            )
        except AwsError as exc:
            if exc.code != "EntityAlreadyExists":
                raise
            role = self._call("get_role", RoleName=name)
        return role["Role"]["Arn"]

    def update_trust_policy(self, role: str, trust_policy: dict) -> None:
        self._call("update_assume_role_policy", RoleName=role, PolicyDocument=json.dumps(trust_policy))

    def trust_policy(self, role: str) -> dict:
        doc = self._call("get_role", RoleName=role)["Role"]["AssumeRolePolicyDocument"]
        return json.loads(doc) if isinstance(doc, str) else doc

    def stable_principal(self, caller_arn: str) -> str:
        """The caller as a trust policy should name it: a role session becomes its role (path included).

        The path needs GetRole; a platform role not allowed to read itself
        gets the path-less ARN, which is right for the usual path `/`.
        """
        role = arns.assumed_role_name(caller_arn)
        if role is None:
            return caller_arn
        try:
            path = self._call("get_role", RoleName=role)["Role"].get("Path", "/")
        except (AwsAccessDenied, AwsNotFound) as exc:
            logger.warning("cannot read the path of the platform role %s (%s); trusting it as role/%s",
                           role, exc, role)
            path = "/"
        return arns.stable_principal(caller_arn, path)

    def put_role_policy(self, role: str, policy_name: str, document: dict) -> None:
        self._call("put_role_policy", RoleName=role, PolicyName=policy_name, PolicyDocument=json.dumps(document))

    def get_role_policy(self, role: str, policy_name: str) -> dict:
        doc = self._call("get_role_policy", RoleName=role, PolicyName=policy_name)["PolicyDocument"]
        return json.loads(doc) if isinstance(doc, str) else doc

    def delete_role(self, role: str) -> None:
        try:
            for name in self._call("list_role_policies", RoleName=role).get("PolicyNames", []):
                self._call("delete_role_policy", RoleName=role, PolicyName=name)
            self._call("delete_role", RoleName=role)
        except AwsNotFound:
            return

    def tag_role(self, role: str, tags: dict[str, str]) -> None:
        self._call("tag_role", RoleName=role, Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())])

    def role_exists(self, role: str) -> bool:
        try:
            self._call("get_role", RoleName=role)
            return True
        except AwsNotFound:
            return False


class StsGateway(Gateway):
    def caller_identity(self) -> arns.CallerIdentity:
        answer = self._call("get_caller_identity")
        return arns.CallerIdentity(account=answer["Account"], arn=answer["Arn"])

    def caller_arn(self) -> str:
        return self.caller_identity().arn

    def account_id(self) -> str:
        return self.caller_identity().account

    def assume_role(self, role_arn: str, *, session_name: str, duration: int = 3600,
                    session_policy: dict | None = None, tags: dict[str, str] | None = None) -> TemporaryCredentials:
        kwargs: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": session_name[:64],
                                  "DurationSeconds": duration}
        if session_policy:
            kwargs["Policy"] = json.dumps(session_policy)
        if tags:
            kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
        creds = self._call("assume_role", **kwargs)["Credentials"]
        expiration = creds["Expiration"]
        if not isinstance(expiration, datetime):
            expiration = datetime.fromisoformat(str(expiration))
        return TemporaryCredentials(
            access_key_id=creds["AccessKeyId"],
            secret_access_key=creds["SecretAccessKey"],
            session_token=creds["SessionToken"],
            expiration=expiration,
        )
