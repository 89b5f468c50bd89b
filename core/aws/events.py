from __future__ import annotations

import json

from core.aws.base import Gateway


class EventsGateway(Gateway):
    def put_rule(self, name: str, *, pattern: dict, tags: dict[str, str], description: str = "") -> str:
        arn = self._call("put_rule", Name=name, EventPattern=json.dumps(pattern), State="ENABLED",
                         Description=description)["RuleArn"]
        self._call("tag_resource", ResourceARN=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        return arn

    def put_sqs_target(self, rule: str, *, target_id: str, queue_arn: str) -> None:
        self._call("put_targets", Rule=rule, Targets=[{"Id": target_id, "Arn": queue_arn}])

    def describe_rule(self, name: str) -> dict:
        return self._call("describe_rule", Name=name)
