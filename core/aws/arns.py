"""Every ARN the portal writes, built here in the partition of the caller's identity.

AWS has more than one partition (`aws`, `aws-cn`, `aws-us-gov`, ...): an ARN
with the wrong one names nothing, so a policy written with a hard-coded
`arn:aws` silently grants nothing in China or GovCloud. The partition is the
second field of GetCallerIdentity's Arn (`CallerIdentity.partition`); callers
pass it in, so this module makes no AWS call.

The trust-policy principal is here too: an assumed-role session ARN
(`arn:P:sts::A:assumed-role/R/S`) names one session of one host, which no
other host and no replaced instance can ever present again; the stable
principal is the role (`arn:P:iam::A:role/<path>R`, the path from GetRole).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PARTITION = "aws"
_ASSUMED_ROLE = re.compile(r"^arn:(?P<partition>[\w-]+):sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/.+$")


def partition_of(arn_text: str) -> str:
    """The partition field of an ARN (`aws`, `aws-cn`, `aws-us-gov`)."""
    parts = arn_text.split(":", 2)
    if len(parts) < 3 or parts[0] != "arn" or not parts[1]:
        raise ValueError(f"not an ARN: {arn_text!r}")
    return parts[1]


def arn(*, partition: str, service: str, region: str = "", account: str = "", resource: str) -> str:
    """`arn:<partition>:<service>:<region>:<account>:<resource>`."""
    return f"arn:{partition}:{service}:{region}:{account}:{resource}"


def s3(partition: str, bucket: str, key: str | None = None) -> str:
    """The bucket (no `key`), or `bucket/key` (a key, a prefix or a pattern)."""
    return arn(partition=partition, service="s3", resource=bucket if key is None else f"{bucket}/{key}")


def iam_role(partition: str, account: str, name: str, path: str = "/") -> str:
    return arn(partition=partition, service="iam", account=account, resource=f"role{path}{name}")


def sagemaker(partition: str, region: str, account: str, resource: str) -> str:
    """`resource` like `model-package-group/<name>` or `training-job/*`."""
    return arn(partition=partition, service="sagemaker", region=region, account=account, resource=resource)


def assumed_role_name(caller_arn: str) -> str | None:
    """The role name of an assumed-role session ARN, else None."""
    match = _ASSUMED_ROLE.match(caller_arn)
    return match["role"] if match else None


def stable_principal(caller_arn: str, role_path: str = "/") -> str:
    """The principal a trust policy should name for this caller: a session becomes its role.

    IAM users, federated users and roots are already stable and come back unchanged.
    `role_path` is the role's path (GetRole's `Path`), part of the role's ARN.
    """
    match = _ASSUMED_ROLE.match(caller_arn)
    if not match:
        return caller_arn
    return iam_role(match["partition"], match["account"], match["role"], role_path or "/")


@dataclass(frozen=True)
class CallerIdentity:
    """GetCallerIdentity's answer: the account and the ARN of whoever signed the request."""

    account: str
    arn: str

    @property
    def partition(self) -> str:
        return partition_of(self.arn)
