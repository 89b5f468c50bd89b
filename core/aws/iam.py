from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from core.aws.base import Gateway
from core.aws.clients import TemporaryCredentials
from core.aws.errors import AwsError, AwsNotFound


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
    def caller_arn(self) -> str:
        return self._call("get_caller_identity")["Arn"]

    def account_id(self) -> str:
        return self._call("get_caller_identity")["Account"]

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
