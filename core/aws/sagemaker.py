"""SageMakerGateway: the few SageMaker calls the portal makes, errors translated.

Pipelines (upsert, start, describe, steps, stop) and the model registry
(groups, packages, approval). The client is injected; every botocore error
leaves as an `errors.AwsError` that says whether a retry can help.
"""

from __future__ import annotations

import json
from typing import Any

from core.aws.base import Gateway
from core.aws.errors import AwsError

PENDING_MANUAL_APPROVAL = "PendingManualApproval"
APPROVAL_STATUSES = ("Approved", "Rejected", PENDING_MANUAL_APPROVAL)


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
