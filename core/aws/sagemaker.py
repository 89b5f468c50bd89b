"""SageMakerGateway: the few SageMaker calls the portal makes, errors translated.

Pipelines (upsert, start, describe, steps, stop) and the model registry
(groups, packages, approval). The client is injected; every botocore error
leaves as an `errors.AwsError` that says whether a retry can help.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from core.aws.base import Gateway
from core.aws.errors import AwsError

PENDING_MANUAL_APPROVAL = "PendingManualApproval"
APPROVAL_STATUSES = ("Approved", "Rejected", PENDING_MANUAL_APPROVAL)


@functools.lru_cache(maxsize=1)
def transform_instance_types() -> frozenset[str]:
    """The instance types a batch transform job accepts (botocore's model of the API: `ml.t3.medium`, a
    processing type of small plans, is not one)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.shape_for("TransformInstanceType").enum)


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


class SageMakerGateway(Gateway):
    # -- pipelines ---------------------------------------------------------
    def upsert_pipeline(self, name: str, definition: dict, role_arn: str, tags: dict[str, str]) -> str:
        """Create the pipeline, or update it in place if it exists; return its ARN."""
        body = json.dumps(definition)
        existing = self._pipeline_arn(name)
        if existing is None:
            response = self._call("create_pipeline", PipelineName=name, PipelineDefinition=body,
                                  RoleArn=role_arn, Tags=_tag_list(tags))
            return response["PipelineArn"]
        response = self._call("update_pipeline", PipelineName=name, PipelineDefinition=body, RoleArn=role_arn)
        if tags:
            self._call("add_tags", ResourceArn=existing, Tags=_tag_list(tags))
        return response.get("PipelineArn") or existing

    def pipeline_definition(self, name: str) -> dict | None:
        """The definition the pipeline runs now (DescribePipeline), or None if there is no such pipeline."""
        if self._pipeline_arn(name) is None:
            return None
        return json.loads(self._call("describe_pipeline", PipelineName=name)["PipelineDefinition"])

    def _pipeline_arn(self, name: str) -> str | None:
        # A listing, not DescribePipeline: "not found" is ResourceNotFound on
        # AWS but ValidationException on the emulator.
        kwargs: dict[str, Any] = {"PipelineNamePrefix": name}
        while True:
            page = self._call("list_pipelines", **kwargs)
            for summary in page.get("PipelineSummaries", []):
                if summary.get("PipelineName") == name:
                    return summary["PipelineArn"]
            if not page.get("NextToken"):
                return None
            kwargs["NextToken"] = page["NextToken"]

    def pipeline_last_modified(self, name: str) -> Any | None:
        """LastModifiedTime of the pipeline (None: not deployed), from a listing: cheap to ask every build."""
        kwargs: dict[str, Any] = {"PipelineNamePrefix": name}
        while True:
            page = self._call("list_pipelines", **kwargs)
            for summary in page.get("PipelineSummaries", []):
                if summary.get("PipelineName") == name:
                    return summary.get("LastModifiedTime") or summary.get("CreationTime") or ""
            if not page.get("NextToken"):
                return None
            kwargs["NextToken"] = page["NextToken"]

    def describe_pipeline(self, name: str) -> dict:
        return self._call("describe_pipeline", PipelineName=name)

    def start_execution(self, pipeline_name: str, parameters: dict[str, str], display_name: str,
                        client_token: str) -> str:
        """Start an execution; the same `client_token` never starts a second one."""
        response = self._call(
            "start_pipeline_execution",
            PipelineName=pipeline_name,
            PipelineExecutionDisplayName=display_name,
            PipelineParameters=[{"Name": k, "Value": v} for k, v in parameters.items()],
            ClientRequestToken=client_token,
        )
        return response["PipelineExecutionArn"]

    def find_execution(self, pipeline_name: str, display_name: str, *, build_code: str,
                       created_after: Any = None) -> str | None:
        """The ARN of the execution with this display name whose BuildCode parameter is `build_code`, if any.

        How a start whose answer was lost (the worker died) is found again:
        DescribePipelineExecution does not return the ClientRequestToken, but
        the display name carries the build code and attempt, and the
        parameters confirm whose execution it is.
        """
        kwargs: dict[str, Any] = {"PipelineName": pipeline_name, "SortOrder": "Descending"}
        if created_after is not None:
            kwargs["CreatedAfter"] = created_after
        while True:
            page = self._call("list_pipeline_executions", **kwargs)
            for summary in page.get("PipelineExecutionSummaries", []):
                if summary.get("PipelineExecutionDisplayName") != display_name:
                    continue
                arn = summary["PipelineExecutionArn"]
                if self.execution_parameters(arn).get("BuildCode") == build_code:
                    return arn
            if not page.get("NextToken"):
                return None
            kwargs["NextToken"] = page["NextToken"]

    def execution_parameters(self, arn: str) -> dict[str, str]:
        values: dict[str, str] = {}
        kwargs: dict[str, Any] = {"PipelineExecutionArn": arn}
        while True:
            page = self._call("list_pipeline_parameters_for_execution", **kwargs)
            values.update({p["Name"]: p["Value"] for p in page.get("PipelineParameters", [])})
            if not page.get("NextToken"):
                return values
            kwargs["NextToken"] = page["NextToken"]

    def describe_execution(self, arn: str) -> dict:
        return self._call("describe_pipeline_execution", PipelineExecutionArn=arn)

    def list_execution_steps(self, arn: str) -> list[dict]:
        """All steps of an execution, oldest first (every page)."""
        steps: list[dict] = []
        kwargs: dict[str, Any] = {"PipelineExecutionArn": arn, "SortOrder": "Ascending"}
        while True:
            page = self._call("list_pipeline_execution_steps", **kwargs)
            steps.extend(page.get("PipelineExecutionSteps", []))
            if not page.get("NextToken"):
                return steps
            kwargs["NextToken"] = page["NextToken"]

    def stop_execution(self, arn: str, client_token: str | None = None) -> None:
        kwargs: dict[str, Any] = {"PipelineExecutionArn": arn}
        if client_token:
            kwargs["ClientRequestToken"] = client_token
        self._call("stop_pipeline_execution", **kwargs)

    # -- jobs (what a step ran, as AWS bills it) ---------------------------
    def describe_training_job(self, name: str) -> dict:
        return self._call("describe_training_job", TrainingJobName=name)

    def describe_processing_job(self, name: str) -> dict:
        return self._call("describe_processing_job", ProcessingJobName=name)

    def tuning_training_jobs(self, tuning_job_name: str) -> list[str]:
        """Names of every training job a tuning job ran (every page)."""
        names: list[str] = []
        kwargs: dict[str, Any] = {"HyperParameterTuningJobName": tuning_job_name, "MaxResults": 100}
        while True:
            page = self._call("list_training_jobs_for_hyper_parameter_tuning_job", **kwargs)
            names.extend(job["TrainingJobName"] for job in page.get("TrainingJobSummaries", []))
            if not page.get("NextToken"):
                return names
            kwargs["NextToken"] = page["NextToken"]

    # -- model registry ----------------------------------------------------
    def create_model_package_group(self, name: str, description: str, tags: dict[str, str]) -> str:
        """Create the group; an existing group with that name is fine."""
        try:
            response = self._call("create_model_package_group", ModelPackageGroupName=name,
                                  ModelPackageGroupDescription=description, Tags=_tag_list(tags))
        except AwsError as exc:
            if "already exists" not in str(exc).lower():
                raise
            response = self._call("describe_model_package_group", ModelPackageGroupName=name)
        return response["ModelPackageGroupArn"]

    def delete_model_package_group(self, name: str) -> int:
        """Delete every version in the group, then the group; returns how many versions were deleted."""
        packages = self.list_model_packages(name)
        for package in packages:
            self._call("delete_model_package", ModelPackageName=package["ModelPackageArn"])
        self._call("delete_model_package_group", ModelPackageGroupName=name)
        return len(packages)

    def create_model_package(self, group: str, model_data_url: str, metrics: dict, image_uri: str,
                             description: str, customer_metadata: dict[str, str],
                             metrics_s3_uri: str = "") -> str:
        """Register a model version, pending manual approval.

        `metrics` go into the customer metadata as `metric.<name>` (the API's
        ModelMetrics only takes S3 documents: pass `metrics_s3_uri` for that).
        """
        metadata = {key: str(value) for key, value in customer_metadata.items()}
        metadata.update({f"metric.{name}": f"{value}" for name, value in metrics.items()})
        kwargs: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "ModelPackageDescription": description,
            "ModelApprovalStatus": PENDING_MANUAL_APPROVAL,
            "InferenceSpecification": {
                "Containers": [{"Image": image_uri, "ModelDataUrl": model_data_url}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            "CustomerMetadataProperties": metadata,
        }
        if metrics_s3_uri:
            kwargs["ModelMetrics"] = {"ModelQuality": {"Statistics": {
                "ContentType": "application/json", "S3Uri": metrics_s3_uri}}}
        return self._call("create_model_package", **kwargs)["ModelPackageArn"]

    def tag_resource(self, arn: str, tags: dict[str, str]) -> None:
        self._call("add_tags", ResourceArn=arn, Tags=_tag_list(tags))

    def describe_model_package(self, arn: str) -> dict:
        return self._call("describe_model_package", ModelPackageName=arn)

    def update_model_package_approval(self, arn: str, status: str) -> None:
        if status not in APPROVAL_STATUSES:
            raise ValueError(f"approval status must be one of {APPROVAL_STATUSES}, got {status!r}")
        self._call("update_model_package", ModelPackageArn=arn, ModelApprovalStatus=status)

    def list_model_packages(self, group: str) -> list[dict]:
        """Every version in the group, newest first."""
        packages: list[dict] = []
        kwargs: dict[str, Any] = {"ModelPackageGroupName": group, "SortBy": "CreationTime",
                                  "SortOrder": "Descending"}
        while True:
            page = self._call("list_model_packages", **kwargs)
            packages.extend(page.get("ModelPackageSummaryList", []))
            if not page.get("NextToken"):
                return packages
            kwargs["NextToken"] = page["NextToken"]

    # -- test endpoints ------------------------------------------------------

    def deploy_endpoint(self, *, endpoint_name: str, version_tag: str, image_uri: str, model_data_url: str,
                        role_arn: str, instance_type: str, serverless_memory_mb: int | None,
                        tags: dict[str, str], update: bool) -> str:
        """A model and an endpoint configuration for this version, then the endpoint created or updated to it.

        The model runs the step image's `serve` entry point (SageMaker starts inference images with `serve`)
        under the tenant role, so the artifact is read with the tenant's permissions. Serverless inference
        when `serverless_memory_mb` is given, else one instance of `instance_type`. Returns the endpoint name.
        """
        resource = f"{endpoint_name}-{version_tag}"[:63]
        self._call("create_model", ModelName=resource, ExecutionRoleArn=role_arn, Tags=_tag_list(tags),
                   PrimaryContainer={"Image": image_uri, "ModelDataUrl": model_data_url,
                                     "Environment": {"SAGEMAKER_PROGRAM": "serve"}})
        variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": resource}
        if serverless_memory_mb:
            variant["ServerlessConfig"] = {"MemorySizeInMB": serverless_memory_mb, "MaxConcurrency": 5}
        else:
            variant.update(InstanceType=instance_type, InitialInstanceCount=1, InitialVariantWeight=1.0)
        self._call("create_endpoint_config", EndpointConfigName=resource, ProductionVariants=[variant],
                   Tags=_tag_list(tags))
        if update:
            self._call("update_endpoint", EndpointName=endpoint_name, EndpointConfigName=resource)
        else:
            self._call("create_endpoint", EndpointName=endpoint_name, EndpointConfigName=resource,
                       Tags=_tag_list(tags))
        return endpoint_name

    def endpoint_status(self, endpoint_name: str) -> tuple[str, str]:
        """(EndpointStatus, FailureReason) as SageMaker reports them."""
        described = self._call("describe_endpoint", EndpointName=endpoint_name)
        return described["EndpointStatus"], described.get("FailureReason", "")

    def delete_endpoint_resources(self, endpoint_name: str) -> None:
        """The endpoint, then the configuration and model it used; parts already gone are fine."""
        try:
            config = self._call("describe_endpoint", EndpointName=endpoint_name)["EndpointConfigName"]
        except AwsError as exc:
            if not _is_missing(exc):
                raise
            return
        models = [v["ModelName"] for v in self._call("describe_endpoint_config", EndpointConfigName=config)
                  .get("ProductionVariants", [])]
        self._call("delete_endpoint", EndpointName=endpoint_name)
        self._call("delete_endpoint_config", EndpointConfigName=config)
        for model in models:
            self._call("delete_model", ModelName=model)


    # -- batch transform -----------------------------------------------------

    def create_transform_job(self, *, job_name: str, image_uri: str, model_data_url: str, role_arn: str,
                             input_uri: str, output_uri: str, instance_type: str, instance_count: int,
                             tags: dict[str, str]) -> str:
        """A model of this version (as the endpoint path makes it: the step image's `serve`, the tenant role),
        then a batch transform job scoring the CSV lines under `input_uri` into `output_uri`. Returns its name.

        Mini-batches of whole lines (MultiRecord, at most 6 MB, what `serve` accepts) go to /invocations as
        text/csv; each answer (JSON, one prediction per line) is written as one line of `<input>.out`.
        """
        self._call("create_model", ModelName=job_name, ExecutionRoleArn=role_arn, Tags=_tag_list(tags),
                   PrimaryContainer={"Image": image_uri, "ModelDataUrl": model_data_url,
                                     "Environment": {"SAGEMAKER_PROGRAM": "serve"}})
        self._call("create_transform_job", TransformJobName=job_name, ModelName=job_name,
                   BatchStrategy="MultiRecord", MaxPayloadInMB=6,
                   TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
                                   "ContentType": "text/csv", "SplitType": "Line"},
                   TransformOutput={"S3OutputPath": output_uri, "Accept": "application/json",
                                    "AssembleWith": "Line"},
                   TransformResources={"InstanceType": instance_type, "InstanceCount": instance_count},
                   Tags=_tag_list(tags))
        return job_name

    def transform_job_status(self, job_name: str) -> tuple[str, str]:
        """(TransformJobStatus, FailureReason): InProgress, Completed, Failed, Stopping or Stopped."""
        described = self._call("describe_transform_job", TransformJobName=job_name)
        return described["TransformJobStatus"], described.get("FailureReason", "")


def _is_missing(exc: AwsError) -> bool:
    from core.aws.errors import AwsNotFound

    return isinstance(exc, AwsNotFound) or "could not find" in str(exc).lower()


class SageMakerRuntimeGateway(Gateway):
    """InvokeEndpoint: the rows to score, as the tenant sent them."""

    def invoke_endpoint(self, endpoint_name: str, *, body: bytes, content_type: str) -> tuple[int, dict]:
        """(200, the container's JSON); a container's own 4xx answer comes back as (its status, its JSON)."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.invoke_endpoint(EndpointName=endpoint_name, Body=body, ContentType=content_type,
                                                   Accept="application/json")
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ModelError" and exc.response.get("OriginalStatusCode"):
                try:
                    return int(exc.response["OriginalStatusCode"]), json.loads(exc.response.get("OriginalMessage")
                                                                               or "{}")
                except ValueError:
                    return int(exc.response["OriginalStatusCode"]), {"message": exc.response.get("OriginalMessage")}
            from core.aws.errors import translate

            raise translate(exc, "invoke_endpoint") from exc
        return 200, json.loads(response["Body"].read() or b"{}")
