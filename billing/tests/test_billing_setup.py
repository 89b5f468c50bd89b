"""Billing setup: the tag keys' cost allocation status and activation (Stubber: moto has neither call), Cost
Explorer access, the last sync and the Marketplace product, on the staff page and `manage.py billing_setup`."""

from __future__ import annotations

from io import StringIO

import pytest
from botocore.stub import Stubber
from django.core.management import call_command
from django.urls import reverse

from billing.models import BillingSetupCheck
from core.aws.costexplorer import CostExplorerGateway
from tests.web_support import text_of

KEYS = ["mlaas:tenant", "mlaas:plan"]


@pytest.fixture
def ce(monkeypatch):
    import botocore.session
    from botocore.config import Config

    from core.aws import gateways

    client = botocore.session.Session().create_client(
        "ce", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}))
    monkeypatch.setattr(gateways, "platform_cost_explorer", lambda: CostExplorerGateway(client))
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def tags(**statuses):
    return {"CostAllocationTags": [{"TagKey": k.replace("_", ":"), "Type": "UserDefined", "Status": v}
                                   for k, v in statuses.items()]}


def test_command_shows_what_is_not_ready_and_activates_on_request(reference_data, ce, settings):
    settings.MLAAS_MARKETPLACE_PRODUCT_CODE = ""
    ce.add_response("list_cost_allocation_tags", tags(mlaas_tenant="Inactive"), {"TagKeys": KEYS, "MaxResults": 100})
    ce.add_response("list_cost_allocation_tags", tags(mlaas_tenant="Inactive", mlaas_plan="Inactive"),
                    {"TagKeys": KEYS, "MaxResults": 100})
    ce.add_response("update_cost_allocation_tags_status", {"Errors": []}, {"CostAllocationTagsStatus": [
        {"TagKey": "mlaas:tenant", "Status": "Active"}, {"TagKey": "mlaas:plan", "Status": "Active"}]})
    shown, activated = StringIO(), StringIO()

    call_command("billing_setup", stdout=shown)
    call_command("billing_setup", "--activate", stdout=activated)

    assert shown.getvalue().splitlines()[:3] == [
        "TODO Tag key mlaas:tenant: Inactive",
        "     -> Activate it (`manage.py billing_setup --activate` or the button below); Cost Explorer groups costs "
        "by it from then on, not retroactively.",
        "TODO Tag key mlaas:plan: missing"]
    lines = activated.getvalue().splitlines()
    assert lines[:4] == ["activated: mlaas:tenant, mlaas:plan", "ok   Tag key mlaas:tenant: Active",
                         "ok   Tag key mlaas:plan: Active", "ok   Cost Explorer access: answered"]
    assert "TODO Last Cost Explorer sync: never" in lines
    assert "TODO AWS Marketplace product: not configured" in lines
    assert BillingSetupCheck.objects.latest().tag_statuses == {"mlaas:tenant": "Active", "mlaas:plan": "Active"}


def test_page_shows_the_last_check_and_access_denied_says_what_to_do(reference_data, ce, staff_user, client,
                                                                      settings):
    settings.MLAAS_MARKETPLACE_PRODUCT_CODE = "prod-mlaas-demo1"
    client.force_login(staff_user)
    before = text_of(client.get(reverse("billing:setup")))
    ce.add_client_error("list_cost_allocation_tags", "AccessDeniedException", "not allowed", http_status_code=400)

    checked = client.post(reverse("billing:setup"), {"action": "check"})
    after = text_of(client.get(reverse("billing:setup"))).replace("&#x27;", "'")

    assert "Cost allocation tags ✗ never checked Run the check" in before
    assert checked.status_code == 302
    assert "Cost Explorer access ✗ list_cost_allocation_tags: AccessDeniedException: not allowed Enable Cost " \
           "Explorer in the management account's Billing console" in after
    assert "AWS Marketplace product ✓ prod-mlaas-demo1" in after


def test_viewing_the_page_calls_no_aws(reference_data, ce, staff_user, client):
    client.force_login(staff_user)
    assert client.get(reverse("billing:setup")).status_code == 200  # the Stubber would fail on any call


def test_setup_and_marketplace_pages_are_staff_only(reference_data, client):
    from tests.web_support import create_member, create_tenant

    client.force_login(create_member(create_tenant(plan="basic"), role="owner"))
    assert [client.get(reverse(name)).status_code for name in ("billing:setup", "billing:marketplace")] == [404, 404]
