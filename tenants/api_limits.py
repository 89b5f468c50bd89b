"""REST API rate limits: per token and per tenant, from the tenant's plan (higher tiers get more).

Each token may make its plan's `api_requests_per_minute` requests a minute (a burst of a
minute's worth at most); all of a tenant's tokens together twice that, so one script cannot
use up what the tenant's other tokens need, and many tokens cannot multiply the plan's
limit. Staff tokens get MLAAS_API_STAFF_REQUESTS_PER_MINUTE each. The buckets are the Redis
token buckets of `core.ratebudget`, shared by every web process. If Redis is down requests
are let through: the limit protects the service, it must not take it down. Bucket keys
name the tenant by slug and creation time, so a tenant made again under an old slug
starts with a full bucket.
"""

from __future__ import annotations

import logging

from django.conf import settings

from core.api import RateLimited
from core.ratebudget import RateBudget, redis_for
from tenants.models import ApiToken

logger = logging.getLogger(__name__)

TENANT_FACTOR = 2


def api_request_check(token: ApiToken) -> None:
    """RateLimited when this token, or its tenant, has no request left this minute."""
    redis = redis_for(settings.REDIS_URL)
    membership = getattr(token.user, "membership", None)
    if token.user.is_staff or membership is None:
        per_minute, scope, tenant = settings.MLAAS_API_STAFF_REQUESTS_PER_MINUTE, "staff", None
    else:
        tenant = membership.tenant
        per_minute, scope = tenant.plan.api_requests_per_minute, f"the {tenant.plan.name} plan"
    buckets = [(RateBudget(redis, f"api:token:{token.prefix}:{token.pk}", rate=per_minute / 60, burst=per_minute),
                f"this token ({per_minute} requests a minute on {scope})")]
    if tenant is not None:
        tenant_minute = per_minute * TENANT_FACTOR
        key = f"api:tenant:{tenant.slug}:{int(tenant.created_at.timestamp())}"
        buckets.append((RateBudget(redis, key, rate=tenant_minute / 60, burst=tenant_minute),
                        f"tenant {tenant.slug} ({tenant_minute} requests a minute across its tokens on {scope})"))
    for budget, what in buckets:
        try:
            wait = budget.try_take()
        except Exception:  # noqa: BLE001 - Redis down: let the request through
            logger.warning("API rate limit unavailable; request let through", exc_info=True)
            return
        if wait > 0:
            raise RateLimited(f"Too many requests for {what}; retry after {max(1, int(wait + 0.999))} s.",
                              retry_after=wait)
