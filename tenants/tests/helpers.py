"""Helpers of the tenants tests: S3 access probes and a real AWS outage."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings

from core.aws.clients import AwsConfig, TemporaryCredentials, make_client, platform_config, reset_client_cache

DENIED = "AccessDenied"


def outcome(call: Callable[[], Any]) -> str:
    """`ok`, or the S3 error code of the refusal."""
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return "ok"


def s3_access(config: AwsConfig, *, bucket: str, key: str, prefix: str) -> dict[str, str]:
    """What these credentials may do at one location: write, read, list it, list the whole bucket."""
    s3 = make_client("s3", config)
    return {
        "put": outcome(lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"written by the probe\n")),
        "get": outcome(lambda: s3.get_object(Bucket=bucket, Key=key)["Body"].read()),
        "list": outcome(lambda: s3.list_objects_v2(Bucket=bucket, Prefix=prefix)),
        "list_bucket": outcome(lambda: s3.list_objects_v2(Bucket=bucket)),
    }


def config_from_credentials(creds: TemporaryCredentials) -> AwsConfig:
    return creds.as_config(platform_config())


def config_from_payload(payload: dict[str, str]) -> AwsConfig:
    """What a tenant's script does with the JSON of the API or of `tenant_credentials`."""
    return AwsConfig(region=payload["Region"], endpoint_url=payload["Endpoint"],
                     access_key_id=payload["AccessKeyId"], secret_access_key=payload["SecretAccessKey"],
                     session_token=payload["SessionToken"])


def closed_port_endpoint() -> str:
    """An endpoint on loopback where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def aws_unreachable() -> Iterator[None]:
    """While inside, the platform's AWS endpoint refuses connections (a real outage, not a mock)."""
    saved = settings.AWS_ENDPOINT_URL
    settings.AWS_ENDPOINT_URL = closed_port_endpoint()
    reset_client_cache()
    try:
        yield
    finally:
        settings.AWS_ENDPOINT_URL = saved
        reset_client_cache()
