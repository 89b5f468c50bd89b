"""The SageMaker control-plane budget is one Redis token bucket shared by every worker process."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from core.ratebudget import BudgetExhausted, ControlPlanePacer, RateBudget

ROOT = Path(__file__).resolve().parent.parent

TAKER = r"""
import json, sys, time, redis
sys.path.insert(0, sys.argv[4])
from core.ratebudget import RateBudget
budget = RateBudget(redis.Redis.from_url(sys.argv[1]), sys.argv[2], rate=10, burst=2)
granted = []
for _ in range(int(sys.argv[3])):
    budget.take(timeout=30)
    granted.append(time.time())
print(json.dumps(granted))
"""


def test_rate_budget_is_shared_across_processes(clean_redis):
    url = clean_redis.connection_pool.connection_kwargs
    redis_url = f"redis://{url['host']}:{url['port']}/{url['db']}"
    name = f"test-{uuid.uuid4().hex[:8]}"
    processes = [subprocess.Popen([sys.executable, "-c", TAKER, redis_url, name, "8", str(ROOT)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    grants = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        grants += json.loads(out)
    grants.sort()
    assert len(grants) == 24
    # 10 a second with a burst of 2, whoever asks: 24 grants need at least (24 - 2) / 10 s ...
    assert grants[-1] - grants[0] >= 2.0
    # ... and no second holds more than rate + burst of them, although three processes asked at once.
    assert max(sum(1 for t in grants if start <= t < start + 1.0) for start in grants) <= 12


def test_rate_budget_gives_up_after_its_timeout(clean_redis):
    budget = RateBudget(clean_redis, f"test-{uuid.uuid4().hex[:8]}", rate=0.5, burst=1)
    assert budget.try_take() == 0
    assert budget.try_take() == pytest.approx(2.0, abs=0.1)  # refused: nothing taken, 2 s to the next token
    with pytest.raises(BudgetExhausted):
        budget.take(timeout=0.5)


def test_sagemaker_calls_take_tokens_and_back_off_on_throttling(clean_redis, sagemaker_client_stubbed):
    from core.aws.sagemaker import SageMakerGateway

    client, stub = sagemaker_client_stubbed
    arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/abc"
    stub.add_client_error("start_pipeline_execution", service_error_code="ThrottlingException", http_status_code=400)
    stub.add_response("start_pipeline_execution", {"PipelineExecutionArn": arn})
    slept: list[float] = []
    start = RateBudget(clean_redis, "t:start", rate=0.001, burst=5)
    shared = RateBudget(clean_redis, "t:all", rate=0.001, burst=5)
    pacer = ControlPlanePacer(shared=[shared], budgets={"start_pipeline_execution": [start]}, sleep=slept.append)
    gateway = SageMakerGateway(client, pacer=pacer)
    assert gateway.start_execution("p", {"A": "1"}, "build-1", "t" * 32) == arn
    assert len(slept) == 1 and 0 <= slept[0] <= 1.0  # one jittered backoff (attempt 1: at most 0.5 x 2 s)
    # two attempts, each took a token from both budgets
    assert float(clean_redis.hget(start.key, "tokens")) == pytest.approx(3, abs=0.1)
    assert float(clean_redis.hget(shared.key, "tokens")) == pytest.approx(3, abs=0.1)


def test_sagemaker_throttling_still_surfaces_after_the_retries(clean_redis, sagemaker_client_stubbed):
    from core.aws.errors import AwsRetryableError
    from core.aws.sagemaker import SageMakerGateway

    client, stub = sagemaker_client_stubbed
    for _ in range(3):
        stub.add_client_error("start_pipeline_execution", service_error_code="ThrottlingException",
                              http_status_code=400)
    pacer = ControlPlanePacer(shared=[RateBudget(clean_redis, "t2", rate=100, burst=100)], max_retries=2,
                              sleep=lambda s: None)
    with pytest.raises(AwsRetryableError):  # the dispatcher then requeues the build with a backoff
        SageMakerGateway(client, pacer=pacer).start_execution("p", {}, "b", "t" * 32)


def test_platform_sagemaker_gateway_is_paced(settings):
    from core.aws.gateways import platform_sagemaker

    pacer = platform_sagemaker().pacer
    assert [b.name for b in pacer.shared] == ["sagemaker"]
    assert pacer.shared[0].rate == settings.MLAAS_SAGEMAKER_CALLS_PER_SECOND
    assert [b.rate for b in pacer.budgets["start_pipeline_execution"]] == [settings.MLAAS_SAGEMAKER_STARTS_PER_SECOND]


@pytest.fixture
def sagemaker_client_stubbed():
    import botocore.session
    from botocore.config import Config
    from botocore.stub import Stubber

    client = botocore.session.Session().create_client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}))
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()
