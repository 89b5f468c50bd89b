"""What a SageMaker job does with its RoleArn, done locally: the local runtime's AWS side.

A processing or training job assumes the step's role (sts:AssumeRole, at
most one hour: IAM's limit for role chaining), pulls its image (ECR
GetAuthorizationToken, BatchGetImage, GetDownloadUrlForLayer), lists and
downloads every S3 input (ListObjectsV2, GetObject), uploads its outputs
(PutObject) and writes its log lines to CloudWatch Logs (CreateLogStream,
PutLogEvents). `JobIdentity` makes those calls with the role's credentials
and turns a refusal into `JobDenied`, whose message names the action.

Who decides what (see also core.aws.policy_check):
- STS and S3: the emulator enforces IAM on the real resource; the calls are
  made with the role's credentials and its verdict stands.
- ECR and CloudWatch Logs: moto authorizes them against the resource "*"
  only, which would refuse a correctly scoped policy and accept a wrongly
  broad one. The runtime evaluates the role's policies itself on the real
  ARNs (repository, log group and stream) first; GetAuthorizationToken
  (resource "*" on AWS too) is then also called with the role's credentials,
  the other calls with the platform identity. moto has no
  GetDownloadUrlForLayer: the runtime checks that permission and that the
  layer is in the image manifest.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.aws import policy_check
from core.aws.clients import AwsConfig, TemporaryCredentials, make_client

MAX_CHAINED_SESSION_SECONDS = 3600  # AssumeRole from assumed-role credentials: at most one hour
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
LOG_GROUPS = (PROCESSING_LOG_GROUP, TRAINING_LOG_GROUP)


class JobDenied(Exception):
    """IAM refused a call the job needs; the message names the action, as AWS's does."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__(message)
        self.action = action


class JobInputError(Exception):
    """An input or the image is missing: a sentence for the step's FailureReason."""


@dataclass(frozen=True)
class ImageRef:
    registry_id: str
    region: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, uri: str) -> ImageRef:
        """`<account>.dkr.ecr.<region>.amazonaws.com/<repository>[:tag|@sha256:...]`."""
        host, _, rest = uri.partition("/")
        parts = host.split(".")
        if len(parts) < 4 or parts[1:3] != ["dkr", "ecr"] or not rest:
            raise JobInputError(f"image {uri!r} is not an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/"
                                "<repository>[:tag|@digest])")
        repository, digest, tag = rest, "", ""
        if "@" in rest:
            repository, _, digest = rest.partition("@")
        elif ":" in rest.rsplit("/", 1)[-1]:
            repository, _, tag = rest.rpartition(":")
        return cls(parts[0], parts[3], repository, tag or ("" if digest else "latest"), digest)


def partition_of(arn: str) -> str:
    return arn.split(":", 2)[1] if arn.startswith("arn:") else "aws"


def account_of(arn: str) -> str:
    return arn.split(":")[4] if arn.count(":") >= 5 else ""


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise JobInputError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


class JobIdentity:
    """A job's AWS identity: the step's role, assumed by the platform as SageMaker would."""

    def __init__(self, *, role_arn: str, job_name: str, platform: AwsConfig, platform_clients: dict[str, Any],
                 duration_seconds: int = MAX_CHAINED_SESSION_SECONDS) -> None:
        """`platform_clients`: the platform's sts, iam, ecr and logs clients (injected, cached by the caller)."""
        self.role_arn = role_arn
        self.job_name = job_name
        self.platform = platform
        self.platform_clients = platform_clients
        self.duration_seconds = min(duration_seconds, MAX_CHAINED_SESSION_SECONDS)
        self.partition = partition_of(role_arn)
        self.account = account_of(role_arn)
        self.session_arn = ""
        self._credentials: TemporaryCredentials | None = None
        self._clients: dict[str, Any] = {}
        self._policies: dict[str, dict] | None = None

    # -- the role --------------------------------------------------------------------------------
    def assume(self) -> None:
        from botocore.exceptions import ClientError

        session_name = f"SageMaker-{self.job_name}"[:64]
        try:
            response = self.platform_clients["sts"].assume_role(
                RoleArn=self.role_arn, RoleSessionName=session_name, DurationSeconds=self.duration_seconds)
        except ClientError as error:
            raise self._denied("sts:AssumeRole", self.role_arn, error) from None
        creds = response["Credentials"]
        self._credentials = TemporaryCredentials(creds["AccessKeyId"], creds["SecretAccessKey"],
                                                 creds["SessionToken"], creds["Expiration"])
        self.session_arn = response.get("AssumedRoleUser", {}).get("Arn", "")

    def client(self, service: str) -> Any:
        if self._credentials is None:
            self.assume()
        if service not in self._clients:
            self._clients[service] = make_client(service, self._credentials.as_config(self.platform))
        return self._clients[service]

    def _role_policies(self) -> dict[str, dict]:
        if self._policies is None:
            role_name = self.role_arn.rsplit("/", 1)[-1]
            self._policies = policy_check.role_policies(self.platform_clients["iam"], role_name)
        return self._policies

    def require(self, action: str, resource: str, context: dict[str, str] | None = None) -> None:
        """The runtime's own IAM check (for services the emulator does not enforce on the resource)."""
        decision = policy_check.evaluate(self._role_policies(), action, resource, context)
        if not decision.allowed:
            principal = self.session_arn or self.role_arn
            raise JobDenied(action, f"AccessDeniedException: {decision.denial(principal)}")

    def _denied(self, action: str, resource: str, error: Exception) -> Exception:
        code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
        message = getattr(error, "response", {}).get("Error", {}).get("Message", "") or str(error)
        if code in ("AccessDenied", "AccessDeniedException", "403") or "not authorized" in message.lower():
            principal = self.session_arn or self.role_arn
            return JobDenied(action, f"{code or 'AccessDenied'}: User: {principal} is not authorized to perform: "
                                     f"{action} on resource: {resource}")
        if code in ("NoSuchKey", "NoSuchBucket", "404", "RepositoryNotFoundException", "ImageNotFoundException"):
            return JobInputError(f"{action} on {resource}: {code}: {message}")
        return error

    # -- ECR -------------------------------------------------------------------------------------
    def pull_image(self, image_uri: str) -> dict:
        """The calls a SageMaker host makes to pull the job's image, checked for the role."""
        from botocore.exceptions import ClientError

        image = ImageRef.parse(image_uri)
        repository_arn = f"arn:{self.partition}:ecr:{image.region}:{image.registry_id}:repository/{image.repository}"
        self.require("ecr:GetAuthorizationToken", "*")
        try:
            self.client("ecr").get_authorization_token()
        except ClientError as error:
            raise self._denied("ecr:GetAuthorizationToken", "*", error) from None
        self.require("ecr:BatchGetImage", repository_arn)
        image_id = {"imageDigest": image.digest} if image.digest else {"imageTag": image.tag}
        try:
            response = self.platform_clients["ecr"].batch_get_image(
                registryId=image.registry_id, repositoryName=image.repository, imageIds=[image_id],
                acceptedMediaTypes=["application/vnd.docker.distribution.manifest.v2+json",
                                    "application/vnd.oci.image.manifest.v1+json"])
        except ClientError as error:
            raise self._denied("ecr:BatchGetImage", repository_arn, error) from None
        images = response.get("images") or []
        if not images:
            raise JobInputError(f"image {image_uri} was not found in ECR repository {image.repository}; publish "
                                "the step image (manage.py image_publish)")
        manifest = json.loads(images[0].get("imageManifest") or "{}")
        layers = [layer.get("digest") for layer in manifest.get("layers", []) if layer.get("digest")]
        self.require("ecr:GetDownloadUrlForLayer", repository_arn)  # moto has no GetDownloadUrlForLayer
        return {"repository": image.repository, "digest": images[0].get("imageId", {}).get("imageDigest", ""),
                "layers": len(layers)}

    # -- S3 --------------------------------------------------------------------------------------
    def download(self, s3_uri: str, data_type: str, local_dir: Path) -> list[Path]:
        """An S3Prefix input: every object under the prefix, listed and fetched as the role."""
        from botocore.exceptions import ClientError

        bucket, prefix = split_s3_uri(s3_uri)
        s3 = self.client("s3")
        local_dir.mkdir(parents=True, exist_ok=True)
        if data_type != "S3Prefix":
            raise JobInputError(f"S3DataType {data_type} is not supported by the local runtime (use S3Prefix)")
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        try:
            while True:
                page = s3.list_objects_v2(**kwargs)
                keys.extend(item["Key"] for item in page.get("Contents", []))
                if not page.get("IsTruncated"):
                    break
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        except ClientError as error:
            raise self._denied("s3:ListBucket", f"arn:{self.partition}:s3:::{bucket}", error) from None
        if not keys:
            raise JobInputError(f"no objects under the input {s3_uri}")
        written = []
        for key in keys:
            relative = key[len(prefix):].lstrip("/") or key.rsplit("/", 1)[-1]
            target = local_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                s3.download_file(bucket, key, str(target))
            except ClientError as error:
                raise self._denied("s3:GetObject", f"arn:{self.partition}:s3:::{bucket}/{key}", error) from None
            written.append(target)
        return written

    def upload(self, local_dir: Path, s3_uri: str) -> list[str]:
        """An output: every file under the local path to the S3 prefix, as the role."""
        from botocore.exceptions import ClientError

        bucket, prefix = split_s3_uri(s3_uri)
        s3 = self.client("s3")
        uploaded = []
        files = sorted(p for p in local_dir.rglob("*") if p.is_file()) if local_dir.is_dir() else []
        for path in files:
            key = f"{prefix.rstrip('/')}/{path.relative_to(local_dir).as_posix()}" if prefix else path.name
            try:
                s3.upload_file(str(path), bucket, key)
            except ClientError as error:
                raise self._denied("s3:PutObject", f"arn:{self.partition}:s3:::{bucket}/{key}", error) from None
            except Exception as error:  # noqa: BLE001 - boto3's transfer wraps ClientError
                cause = error.__cause__ or error.__context__
                if isinstance(cause, ClientError):
                    raise self._denied("s3:PutObject", f"arn:{self.partition}:s3:::{bucket}/{key}", cause) from None
                raise
            uploaded.append(f"s3://{bucket}/{key}")
        return uploaded

    # -- CloudWatch Logs -------------------------------------------------------------------------
    def log_stream_arn(self, group: str, stream: str) -> str:
        return f"arn:{self.partition}:logs:{self.platform.region}:{self.account}:log-group:{group}:log-stream:{stream}"

    def open_log_stream(self, group: str) -> str:
        """CreateLogStream `<job name>/algo-1-<epoch seconds>` in the job type's group, as SageMaker names it."""
        stream = f"{self.job_name}/algo-1-{int(time.time())}"
        self.require("logs:CreateLogStream", self.log_stream_arn(group, stream))
        logs = self.platform_clients["logs"]
        try:
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        except logs.exceptions.ResourceNotFoundException:
            logs.create_log_group(logGroupName=group)  # platform_bootstrap makes them; an emptied emulator not
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        return stream

    def put_log_lines(self, group: str, stream: str, lines: list[str]) -> int:
        self.require("logs:PutLogEvents", self.log_stream_arn(group, stream))
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line[:200_000]} for line in lines if line.strip()]
        logs = self.platform_clients["logs"]
        for start in range(0, len(events), 5_000):
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events[start:start + 5_000])
        return len(events)
