from __future__ import annotations

from typing import Any

from core.aws.errors import translate


class Gateway:
    """Base for the typed gateways: holds an injected client, translates errors."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation) from exc
