from __future__ import annotations

from typing import Any

from core.aws.errors import translate


class Gateway:
    """Base for the typed gateways: holds an injected client, translates errors."""

    def __init__(self, client: Any, *, pacer: Any = None) -> None:
        self.client = client
        self.pacer = pacer  # core.ratebudget.ControlPlanePacer: a shared rate budget for these calls

    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        attempt = 0
        while True:
            if self.pacer is not None:
                self.pacer.before(operation)
            try:
                return getattr(self.client, operation)(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                error = translate(exc, operation)
                if self.pacer is None or not self.pacer.should_retry(error.code, attempt):
                    raise error from exc
            attempt += 1
            self.pacer.backoff(attempt)
