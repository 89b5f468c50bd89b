"""Turn a Build row into the engine's BuildLaunch (all tenant-specific values)."""

from __future__ import annotations

from builds.engines.base import BuildLaunch
from builds.models import Algorithm, Build
from tenants import naming


def algorithm_fields(algorithm: Algorithm) -> dict:
    """The BuildLaunch fields that come from the algorithm."""
    return dict(algorithm_slug=algorithm.slug, problem_type=algorithm.problem_type,
                entry_point=algorithm.entry_point, training_image_uri=algorithm.training_image_uri,
                hyperparameters=algorithm.default_hyperparameters, tuning_ranges=algorithm.tuning_ranges,
                objective_metric=algorithm.objective_metric, min_metric=algorithm.min_metric)


def _fitting_algorithms(build: Build) -> dict[str, list[Algorithm]]:
    """Active algorithms per problem type: the build's, then the tenant's default, then catalog order."""
    preferred = [build.algorithm_id, build.tenant.default_algorithm_id]
    catalog = sorted(Algorithm.objects.filter(active=True),
                     key=lambda a: (a.pk not in preferred, preferred.index(a.pk) if a.pk in preferred else 0))
    fitting: dict[str, list[Algorithm]] = {}
    for algorithm in catalog:
        fitting.setdefault(algorithm.problem_type, []).append(algorithm)
    return fitting


def _instances(build: Build) -> dict:
    """The instances recorded on the build when it was created (its size band); builds older than size bands
    run on their plan's instance fields."""
    source = build if build.processing_instance_type else build.plan
    return dict(processing_instance_type=source.processing_instance_type,
                processing_instance_count=source.processing_instance_count,
                training_instance_type=source.training_instance_type,
                training_instance_count=source.training_instance_count)


def launch_for(build: Build) -> BuildLaunch:
    tenant, plan, algorithm = build.tenant, build.plan, build.algorithm
    fitting = _fitting_algorithms(build)
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
        **_instances(build),
        model_package_group=tenant.model_package_group,
        tags=naming.tenant_tags(tenant.slug, plan.slug),
        algorithm_explicit=build.algorithm_explicit,
        fitting_algorithms={kind: [a.slug for a in options] for kind, options in fitting.items()},
        alternatives={kind: algorithm_fields(options[0]) for kind, options in fitting.items()},
        attempt=max(1, build.attempts),
    )
