from __future__ import annotations

from typing import Any

from core.aws.base import Gateway
from core.aws.errors import AwsError


class DynamoDbGateway(Gateway):
    def ensure_ledger_table(self, name: str, *, tags: dict[str, str]) -> str:
        try:
            return self._call("describe_table", TableName=name)["Table"]["TableArn"]
        except AwsError as exc:
            if exc.code != "ResourceNotFoundException":
                raise
        try:
            table = self._create_ledger_table(name, tags)
        except AwsError as exc:
            if exc.code != "ResourceInUseException":  # created concurrently: fine
                raise
            return self._call("describe_table", TableName=name)["Table"]["TableArn"]
        return table["TableDescription"]["TableArn"]

    def _create_ledger_table(self, name: str, tags: dict[str, str]) -> dict:
        return self._call(
            "create_table",
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "tenant", "AttributeType": "S"},
                                  {"AttributeName": "build", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "tenant", "KeyType": "HASH"},
                       {"AttributeName": "build", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )

    def put_item(self, table: str, item: dict[str, Any]) -> None:
        self._call("put_item", TableName=table, Item={k: _attr(v) for k, v in item.items()})

    def update_item(self, table: str, key: dict[str, str], attributes: dict[str, Any]) -> None:
        """Set `attributes` on the item (created if missing), leaving its other attributes as they are."""
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        values = {f":v{i}": _attr(value) for i, value in enumerate(attributes.values())}
        self._call("update_item", TableName=table, Key={k: {"S": v} for k, v in key.items()},
                   UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes))),
                   ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def delete_item(self, table: str, key: dict[str, str]) -> None:
        self._call("delete_item", TableName=table, Key={k: _attr(v) for k, v in key.items()})

    def get_item(self, table: str, key: dict[str, str]) -> dict[str, Any] | None:
        item = self._call("get_item", TableName=table, Key={k: {"S": v} for k, v in key.items()}).get("Item")
        if item is None:
            return None
        return {k: next(iter(v.values())) for k, v in item.items()}


def _attr(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": str(value)}
    return {"S": str(value)}
