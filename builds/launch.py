"""Turn a Build row into the engine's BuildLaunch (all tenant-specific values)."""

from __future__ import annotations

from builds.engines.base import BuildLaunch
from builds.models import Build
from tenants import naming


def launch_for(build: Build) -> BuildLaunch:
    tenant, plan, algorithm = build.tenant, build.plan, build.algorithm
    return BuildLaunch(
        build_code=str(build.code),
        tenant_slug=tenant.slug,
        plan_slug=plan.slug,
        role_arn=tenant.role_arn,
        bucket=build.dataset_bucket,
        dataset_key=build.dataset_key,
        output_prefix=f"{tenant.output_prefix}builds/{build.code}/",
        algorithm_slug=algorithm.slug,
        problem_type=algorithm.problem_type,
        entry_point=algorithm.entry_point,
        training_image_uri=algorithm.training_image_uri,
        target=build.target,
        hyperparameters=algorithm.default_hyperparameters,
        tuning_ranges=algorithm.tuning_ranges,
        objective_metric=algorithm.objective_metric,
        min_metric=algorithm.min_metric,
        tuning_enabled=plan.tuning_included and plan.max_tuning_jobs > 0,
        max_tuning_jobs=plan.max_tuning_jobs,
        processing_instance_type=plan.processing_instance_type,
        processing_instance_count=plan.processing_instance_count,
        training_instance_type=plan.training_instance_type,
        training_instance_count=plan.training_instance_count,
        model_package_group=tenant.model_package_group,
        tags=naming.tenant_tags(tenant.slug, plan.slug),
    )
