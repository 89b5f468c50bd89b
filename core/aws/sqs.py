from __future__ import annotations

import json
from dataclasses import dataclass

from core.aws.base import Gateway
from core.aws.errors import AwsNotFound


@dataclass(frozen=True)
class QueueMessage:
    receipt_handle: str
    body: str
    message_id: str
    receive_count: int = 1  # ApproximateReceiveCount: 1 on the first delivery


class SqsGateway(Gateway):
    def ensure_queue(self, name: str, *, tags: dict[str, str]) -> tuple[str, str]:
        """Create (or reuse) the queue; returns (url, arn)."""
        url = self._call("create_queue", QueueName=name,
                         Attributes={"VisibilityTimeout": "60", "MessageRetentionPeriod": "1209600",
                                     "ReceiveMessageWaitTimeSeconds": "10"},
                         tags=tags)["QueueUrl"]
        return url, self.queue_arn(url)

    def queue_arn(self, url: str) -> str:
        return self._call("get_queue_attributes", QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def set_dead_letter_queue(self, url: str, *, dead_letter_arn: str, max_receive_count: int) -> None:
        """After `max_receive_count` deliveries SQS moves a message to the dead-letter queue."""
        policy = {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(max_receive_count)}
        self._call("set_queue_attributes", QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(policy)})

    def redrive_policy(self, url: str) -> dict:
        attributes = self._call("get_queue_attributes", QueueUrl=url,
                                AttributeNames=["RedrivePolicy"]).get("Attributes", {})
        return json.loads(attributes.get("RedrivePolicy") or "{}")

    def allow_eventbridge(self, url: str, queue_arn: str, rule_arns: list[str]) -> None:
        policy = {
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "AllowIntakeRules",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
            }],
        }
        self._call("set_queue_attributes", QueueUrl=url, Attributes={"Policy": json.dumps(policy)})

    def queue_url(self, name: str) -> str | None:
        try:
            return self._call("get_queue_url", QueueName=name)["QueueUrl"]
        except AwsNotFound:
            return None
        except Exception as exc:  # moto answers a missing queue with a 400 code
            if getattr(exc, "code", "").endswith("NonExistentQueue"):
                return None
            raise

    def receive(self, url: str, *, wait_seconds: int = 10, max_messages: int = 10) -> list[QueueMessage]:
        response = self._call("receive_message", QueueUrl=url, WaitTimeSeconds=wait_seconds,
                              MaxNumberOfMessages=max_messages, MessageSystemAttributeNames=["ApproximateReceiveCount"])
        return [QueueMessage(m["ReceiptHandle"], m["Body"], m["MessageId"],
                             int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
                for m in response.get("Messages", [])]

    def retry_later(self, url: str, receipt_handle: str, *, delay_seconds: int) -> None:
        """Hide a message for `delay_seconds` (at most 12 h) before it is delivered again."""
        self._call("change_message_visibility", QueueUrl=url, ReceiptHandle=receipt_handle,
                   VisibilityTimeout=max(0, min(delay_seconds, 43_200)))

    def delete(self, url: str, receipt_handle: str) -> None:
        self._call("delete_message", QueueUrl=url, ReceiptHandle=receipt_handle)

    def send(self, url: str, body: str) -> None:
        self._call("send_message", QueueUrl=url, MessageBody=body)

    def allow_sns(self, url: str, queue_arn: str, topic_arns: list[str]) -> None:
        self._call("set_queue_attributes", QueueUrl=url, Attributes={"Policy": allow_sns_policy(queue_arn, topic_arns)})


def allow_sns_policy(queue_arn: str, topic_arns: list[str]) -> str:
    """The queue policy that lets these SNS topics deliver to it (and nothing else)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "AllowMarketplaceTopics", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage", "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic_arns}},
    }]})
