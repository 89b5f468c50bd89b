from __future__ import annotations

import email.errors
import email.header
import json
from pathlib import Path
from typing import Any

from core.aws.base import Gateway
from core.aws.errors import AwsError, AwsNotFound, translate


def encode_metadata_value(value: str) -> str:
    """User metadata travels in HTTP headers: non-ASCII text is sent as AWS returns it, RFC 2047 UTF-8."""
    if value.isascii():
        return value
    return email.header.Header(value, "utf-8").encode(maxlinelen=10_000)


def decode_metadata_value(value: str) -> str:
    """The inverse of `encode_metadata_value` (AWS answers non-ASCII metadata in RFC 2047 form)."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (email.errors.HeaderParseError, UnicodeDecodeError, LookupError):
        return value


class S3Gateway(Gateway):
    def create_bucket(self, bucket: str, region: str) -> None:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._call("create_bucket", **kwargs)
        except AwsError as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou",):
                raise

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self._call("head_bucket", Bucket=bucket)
            return True
        except AwsNotFound:
            return False

    def harden_bucket(self, bucket: str, *, tags: dict[str, str], cors_origin: str) -> None:
        """Public access blocked, default encryption, versioning, tags, CORS, EventBridge."""
        self._call(
            "put_public_access_block",
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        self._call(
            "put_bucket_encryption",
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        self._call("put_bucket_versioning", Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        self._call("put_bucket_tagging", Bucket=bucket,
                   Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]})
        self.put_cors(bucket, cors_origin)
        self.enable_eventbridge(bucket)

    def put_tags(self, bucket: str, tags: dict[str, str]) -> None:
        self._call("put_bucket_tagging", Bucket=bucket,
                   Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]})

    def put_cors(self, bucket: str, origin: str) -> None:
        self._call(
            "put_bucket_cors",
            Bucket=bucket,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedOrigins": [origin],
                        "AllowedMethods": ["POST", "PUT", "GET", "HEAD"],
                        "AllowedHeaders": ["*"],
                        "ExposeHeaders": ["ETag", "x-amz-version-id"],
                        "MaxAgeSeconds": 3000,
                    }
                ]
            },
        )

    def enable_eventbridge(self, bucket: str) -> None:
        self._call("put_bucket_notification_configuration", Bucket=bucket,
                   NotificationConfiguration={"EventBridgeConfiguration": {}})

    def bucket_settings(self, bucket: str) -> dict[str, Any]:
        return {
            "versioning": self._call("get_bucket_versioning", Bucket=bucket).get("Status"),
            "encryption": self._call("get_bucket_encryption", Bucket=bucket)[
                "ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
            "public_access_block": self._call("get_public_access_block", Bucket=bucket)[
                "PublicAccessBlockConfiguration"],
            "tags": {t["Key"]: t["Value"] for t in self._call("get_bucket_tagging", Bucket=bucket)["TagSet"]},
        }

    def put_object(self, bucket: str, key: str, body: bytes, *, metadata: dict[str, str] | None = None,
                   content_type: str = "application/octet-stream") -> dict[str, Any]:
        metadata = {name: encode_metadata_value(value) for name, value in (metadata or {}).items()}
        return self._call("put_object", Bucket=bucket, Key=key, Body=body, Metadata=metadata,
                          ContentType=content_type)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        return self._call("get_object", Bucket=bucket, Key=key)["Body"].read()

    def get_json(self, bucket: str, key: str) -> Any:
        return json.loads(self.get_bytes(bucket, key))

    def get_first_bytes(self, bucket: str, key: str, count: int, version_id: str = "") -> bytes:
        """The object's first `count` bytes (a ranged GET): enough to read a CSV's header line."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": f"bytes=0-{max(0, count - 1)}"}
        if version_id:
            kwargs["VersionId"] = version_id
        return self._call("get_object", **kwargs)["Body"].read()

    def head_object(self, bucket: str, key: str, version_id: str = "") -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        return self._call("head_object", **kwargs)

    def object_metadata(self, bucket: str, key: str, version_id: str = "") -> dict[str, str]:
        """The object's user metadata, names lower-cased, values decoded to text."""
        head = self.head_object(bucket, key, version_id)
        return {name.lower(): decode_metadata_value(value) for name, value in (head.get("Metadata") or {}).items()}

    def download_file(self, bucket: str, key: str, dest: Path, version_id: str = "") -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"VersionId": version_id} if version_id else None
        try:
            self.client.download_file(bucket, key, str(dest), ExtraArgs=extra)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "download_file") from exc

    def upload_file(self, source: Path, bucket: str, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(str(source), bucket, key)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "upload_file") from exc

    def list_keys(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        out: list[dict[str, Any]] = []
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                out.extend(page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "list_objects_v2") from exc
        return out

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every version of every object under prefix; returns the count."""
        from botocore.exceptions import BotoCoreError, ClientError

        deleted = 0
        paginator = self.client.get_paginator("list_object_versions")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                items = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                         for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                if items:
                    self.client.delete_objects(Bucket=bucket, Delete={"Objects": items, "Quiet": True})
                    deleted += len(items)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "delete_objects") from exc
        return deleted

    def delete_bucket(self, bucket: str) -> None:
        self.delete_prefix(bucket, "")
        self._call("delete_bucket", Bucket=bucket)

    def presigned_post(self, bucket: str, key: str, *, max_bytes: int, expires: int = 900,
                       metadata: dict[str, str] | None = None) -> dict[str, Any]:
        fields: dict[str, str] = {}
        conditions: list[Any] = [["content-length-range", 1, max_bytes], {"key": key}]
        for name, value in (metadata or {}).items():
            encoded = encode_metadata_value(value)
            fields[f"x-amz-meta-{name}"] = encoded
            conditions.append({f"x-amz-meta-{name}": encoded})
        return self._call("generate_presigned_post", Bucket=bucket, Key=key, Fields=fields,
                          Conditions=conditions, ExpiresIn=expires)

    def presigned_get(self, bucket: str, key: str, *, expires: int = 300, filename: str = "") -> str:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self._call("generate_presigned_url", ClientMethod="get_object", Params=params, ExpiresIn=expires)
