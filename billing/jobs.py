"""RQ entry points of the billing app."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def cost_sync_if_due() -> None:
    """Daily Cost Explorer sync; enqueued by the scheduler (filled in by the billing work)."""
    return None
