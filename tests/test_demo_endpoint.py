"""`make run`'s demo: once the demo tenant's sample build registered a version, the scheduler approves it and
deploys it to the tenant's test endpoint (the ordinary deploy path); afterwards it does nothing."""

from __future__ import annotations

from builds.models import Endpoint, ModelVersion
from tests.web_support import create_build


def test_demo_endpoint_waits_then_approves_and_deploys_once(make_tenant, django_capture_on_commit_callbacks):
    from core.aws import gateways
    from mlaas_portal.demo import demo_endpoint_ensure

    tenant = make_tenant(slug="acme", isolation="silo", plan="standard")
    waiting = demo_endpoint_ensure()
    build = create_build(tenant, version=True)
    version = build.model_version
    arn = gateways.platform_sagemaker().create_model_package(
        group=tenant.model_package_group, model_data_url=f"s3://{tenant.bucket}/{version.artifact_key}",
        metrics={}, image_uri=build.algorithm.training_image_uri, description="demo", customer_metadata={})
    ModelVersion.objects.filter(pk=version.pk).update(arn=arn)

    with django_capture_on_commit_callbacks() as queued:
        deploying = demo_endpoint_ensure()
    ready = demo_endpoint_ensure()

    version.refresh_from_db()
    assert (waiting, deploying, ready) == ("waiting for a model version", "deploying v1", "ready")
    assert (version.approval_status, version.decided_by.username) == ("Approved", "admin")
    assert [(e.name, e.model_version_id, e.status) for e in Endpoint.objects.all()] == [
        ("acme-test", version.pk, "Creating")]
    assert len(queued) == 1  # the provision job, enqueued after the commit
