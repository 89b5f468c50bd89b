from __future__ import annotations

from core.aws.base import Gateway


class SnsGateway(Gateway):
    def subscribe_queue(self, topic_arn: str, queue_arn: str) -> str:
        """Subscribe an SQS queue (SNS envelope kept: the message id makes handling idempotent)."""
        return self._call("subscribe", TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn,
                          ReturnSubscriptionArn=True)["SubscriptionArn"]
