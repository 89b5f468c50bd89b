"""Rate budgets shared by every process: token buckets in Redis, one Lua script each take.

SageMaker allows only a few control-plane calls a second for some operations
(StartPipelineExecution among them) per account, not per process: a burst of 200
dispatches on 8 workers must become calls at the account's pace, not 200 throttled calls.
Each worker takes a token before the call; the bucket lives in Redis and is refilled by
the time Redis itself reports (no clock skew between machines). A caller that finds the
bucket empty waits the time the script says, plus jitter, so workers do not retry in step.

The API rate limits (`core.api_limits`) use the same buckets.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: rate per second, burst, cost. Returns "0" when granted, else the seconds
# until `cost` tokens are there (nothing is taken then, so a refused caller owes nothing).
TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then tokens = burst; at = now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class BudgetExhausted(Exception):
    """No token came within the caller's deadline: a retry later can help."""

    retryable = True


@dataclass(frozen=True)
class RateBudget:
    """`rate` tokens a second, at most `burst` saved up, shared by all holders of the same `name`."""

    redis: Any
    name: str
    rate: float
    burst: float

    @property
    def key(self) -> str:
        return f"mlaas:rate:{self.name}"

    def try_take(self, cost: float = 1.0) -> float:
        """0.0 if the tokens were taken; otherwise the seconds until they would be there."""
        return float(self.redis.eval(TAKE, 1, self.key, self.rate, self.burst, cost))

    def take(self, cost: float = 1.0, *, timeout: float = 60.0, rng: random.Random | None = None,
             sleep=time.sleep) -> float:
        """Block until granted (returns the seconds waited); BudgetExhausted after `timeout`."""
        rng = rng or random
        began = time.monotonic()
        waited = 0.0
        while True:
            wait = self.try_take(cost)
            if wait <= 0:
                return waited
            if time.monotonic() - began + wait > timeout:
                raise BudgetExhausted(f"rate budget `{self.name}` ({self.rate:g}/s) had no token within "
                                      f"{timeout:g} s")
            pause = wait + rng.uniform(0, wait)  # jitter: holders that were refused together spread out
            sleep(pause)
            waited += pause


def backoff_seconds(attempt: int, *, base: float = 0.5, cap: float = 20.0, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff (AWS architecture blog): uniform(0, min(cap, base x 2^attempt))."""
    return (rng or random).uniform(0, min(cap, base * 2 ** attempt))


@functools.lru_cache(maxsize=4)
def redis_for(url: str):
    """One client (and pool) per process and URL."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


THROTTLE_CODES = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
                            "RequestLimitExceeded", "TooManyRequestsException"})


class ControlPlanePacer:
    """Paces a gateway's calls: a token from each budget of the operation before every call,
    and a few jittered retries when AWS still answers "throttled".

    `budgets` maps an operation to its budgets; `shared` are taken for every operation.
    If Redis cannot be reached the call goes ahead unpaced (AWS's own throttling and the
    retries below still apply): pacing must never be the reason a build cannot start.
    """

    def __init__(self, *, shared: list[RateBudget], budgets: dict[str, list[RateBudget]] | None = None,
                 max_retries: int = 3, timeout: float = 60.0, sleep=time.sleep,
                 rng: random.Random | None = None) -> None:
        self.shared, self.budgets = shared, budgets or {}
        self.max_retries, self.timeout, self.sleep, self.rng = max_retries, timeout, sleep, rng or random.Random()

    def before(self, operation: str) -> None:
        for budget in [*self.budgets.get(operation, []), *self.shared]:
            try:
                budget.take(timeout=self.timeout, rng=self.rng, sleep=self.sleep)
            except BudgetExhausted:
                raise
            except Exception:  # noqa: BLE001 - Redis down: go ahead unpaced
                logger.warning("rate budget %s unavailable; calling %s unpaced", budget.name, operation,
                               exc_info=True)

    def should_retry(self, code: str, attempt: int) -> bool:
        return code in THROTTLE_CODES and attempt < self.max_retries

    def backoff(self, attempt: int) -> None:
        self.sleep(backoff_seconds(attempt, rng=self.rng))
