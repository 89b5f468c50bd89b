"""The one place that makes boto3 sessions and clients.

Clients are made on demand, never at import, always with the configured region,
endpoint (the local emulator by default), standard-mode retries and explicit
timeouts. Tenant-scoped work gets a session from assuming the tenant's role.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_platform_clients: dict[tuple, Any] = {}
_data_loader: Any = None
_data_loader_lock = threading.Lock()  # not _lock: platform_client() holds it while making a client


@dataclass(frozen=True)
class AwsConfig:
    region: str
    endpoint_url: str  # "" means real AWS
    access_key_id: str = ""
    secret_access_key: str = ""
    session_token: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 5

    @property
    def is_emulator(self) -> bool:
        return bool(self.endpoint_url)


@dataclass(frozen=True)
class TemporaryCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime

    def as_config(self, base: AwsConfig) -> AwsConfig:
        return AwsConfig(
            region=base.region,
            endpoint_url=base.endpoint_url,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            session_token=self.session_token,
            connect_timeout=base.connect_timeout,
            read_timeout=base.read_timeout,
            max_attempts=base.max_attempts,
        )


def load_emulator_credentials(path: str | Path) -> dict[str, str]:
    """Read the platform identity that the emulator launcher bootstrapped."""
    data = json.loads(Path(path).read_text())
    return {"access_key_id": data["access_key_id"], "secret_access_key": data["secret_access_key"]}


def platform_config() -> AwsConfig:
    """The portal's own identity, from Django settings."""
    from django.conf import settings

    access_key = settings.AWS_ACCESS_KEY_ID
    secret_key = settings.AWS_SECRET_ACCESS_KEY
    if not access_key and settings.AWS_ENDPOINT_URL:
        state = Path(settings.MLAAS_EMULATOR_STATE)
        if state.exists():
            creds = load_emulator_credentials(state)
            access_key, secret_key = creds["access_key_id"], creds["secret_access_key"]
    return AwsConfig(
        region=settings.AWS_REGION,
        endpoint_url=settings.AWS_ENDPOINT_URL,
        access_key_id=access_key,
        secret_access_key=secret_key,
        connect_timeout=settings.AWS_CONNECT_TIMEOUT,
        read_timeout=settings.AWS_READ_TIMEOUT,
    )


def make_client(service: str, config: AwsConfig, **overrides: Any) -> Any:
    """A new boto3 client for `service` configured from `config`."""
    import boto3
    from botocore.config import Config

    extra: dict[str, Any] = {}
    if service == "s3":
        # AWS requires SigV4 for presigned URLs; boto3 would pick SigV2 for a
        # custom endpoint. Path-style addressing keeps the emulator simple.
        extra["signature_version"] = "s3v4"
        extra["s3"] = {"addressing_style": "path" if config.is_emulator else "auto"}
    extra.update(overrides)
    botocore_config = Config(
        region_name=config.region,
        retries={"mode": "standard", "max_attempts": config.max_attempts},
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        **extra,
    )
    kwargs: dict[str, Any] = {"config": botocore_config, "region_name": config.region}
    if config.endpoint_url:
        kwargs["endpoint_url"] = config.endpoint_url
    if config.access_key_id:
        kwargs["aws_access_key_id"] = config.access_key_id
        kwargs["aws_secret_access_key"] = config.secret_access_key
        if config.session_token:
            kwargs["aws_session_token"] = config.session_token
    session = boto3.session.Session(botocore_session=_botocore_session())
    return session.client(service, **kwargs)


def _botocore_session() -> Any:
    """A new botocore session sharing one data loader (which caches the parsed models).

    Tenant clients are made per task; each fresh session would otherwise parse
    the service model and endpoint rules JSON again (0.2-1 s of CPU per client).
    """
    global _data_loader
    import botocore.loaders
    import botocore.session

    session = botocore.session.get_session()
    with _data_loader_lock:
        if _data_loader is None:
            _data_loader = botocore.loaders.create_loader()
        session.register_component("data_loader", _data_loader)
    return session


def platform_client(service: str) -> Any:
    """A cached client for the platform identity (clients are thread-safe)."""
    config = platform_config()
    key = (service, config)
    with _lock:
        client = _platform_clients.get(key)
        if client is None:
            client = make_client(service, config)
            _platform_clients[key] = client
        return client


def reset_client_cache() -> None:
    with _lock:
        _platform_clients.clear()


def client_cache_size() -> int:
    return len(_platform_clients)
