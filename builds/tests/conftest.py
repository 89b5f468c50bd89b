"""Fixtures shared by the builds tests."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.config import Config
from botocore.stub import Stubber


@pytest.fixture
def sagemaker_client():
    """A SageMaker client for botocore's Stubber: no retries, so each stubbed error is seen once."""
    session = botocore.session.Session()
    return session.create_client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


@pytest.fixture
def stub(sagemaker_client):
    with Stubber(sagemaker_client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()
